"""HTTP plumbing: the threaded loopback server and the request handler.

The handler routes requests, asks `ReplayServer` for the (cached) answer bytes and writes
them, applying the faults in force; a stream without faults or delays is written with a
single ``sendall``.
"""

from __future__ import annotations

import http
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Final

from ._faults import Faults
from ._render import _dumps, _Rendered
from ._responses import stream_error_event
from ._wire import (
    _LAST_CHUNK,
    _STREAM_ERROR_EVENT,
    _error_body,
    _fault_error_body,
    _frame,
    _invalid_utf8,
    _malformed,
)

if TYPE_CHECKING:
    from ._server import ReplayServer


_MAX_BODY: Final = 64 * 1024 * 1024


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], replay: ReplayServer, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.replay = replay
        self.live_lock = threading.Lock()
        self.live_connections: set[socket.socket] = set()
        self.live_threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind: its socket.getfqdn() may wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        assert isinstance(request, socket.socket)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"replay-connection-{self.server_port}",
            daemon=True,
        )
        with self.live_lock:
            self.live_connections.add(request)
            self.live_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self.live_lock:
                self.live_connections.discard(request)
                self.live_threads.discard(threading.current_thread())

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away; nothing to report
        super().handle_error(request, client_address)

    def abort_connections(self) -> None:
        with self.live_lock:
            connections = list(self.live_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_connections(self, deadline: float) -> None:
        with self.live_lock:
            threads = list(self.live_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "logprobscope-replay"
    server: _HTTPServer
    _request_id: str = "req_replay_0"

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    # -- low-level writing -------------------------------------------------

    @property
    def _chunked(self) -> bool:
        return self.request_version != "HTTP/1.0"

    def _head(self, status: int, headers: Sequence[tuple[str, str]]) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        lines = [f"{self.protocol_version} {status} {phrase}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"x-request-id: {self._request_id}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        self.connection.sendall(self._head(status, headers) + body)

    def _send_error_json(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self._send_bytes(status, _error_body(message, type_, code, param))

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > _MAX_BODY:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        if not 0 <= size <= _MAX_BODY:
            return None
        return self.rfile.read(size)

    # -- routing -------------------------------------------------------------

    def _route(self, method: str) -> None:
        replay = self.server.replay
        self._request_id = f"req_replay_{next(replay._request_ids)}"
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send_error_json(400, "Could not read the request body.")
            return
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path in ("/v1/chat/completions", "/chat/completions"):
            if method != "POST":
                self._send_error_json(405, f"Method {method} is not allowed on {path}.")
                return
            self._answer(body, path="/v1/chat/completions")
        elif path in ("/v1/responses", "/responses"):
            if method != "POST":
                self._send_error_json(405, f"Method {method} is not allowed on {path}.")
                return
            self._answer(body, path="/v1/responses")
        elif path in ("/v1/models", "/models") and method == "GET":
            data = [
                {"id": model, "object": "model", "created": 0, "owned_by": "logprobscope-replay"}
                for model in replay._models()
            ]
            self._send_bytes(200, _dumps({"object": "list", "data": data}))
        elif path == "/health" and method == "GET":
            self._send_bytes(200, _dumps({"status": "ok"}))
        else:
            self._send_error_json(
                404,
                f"Invalid URL ({method} {path})",
                type_="invalid_request_error",
            )

    def _answer(self, raw: bytes, *, path: str) -> None:
        replay = self.server.replay
        try:
            parsed: object = json.loads(raw)
        except ValueError:
            self._send_error_json(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload.)",
            )
            return
        if not isinstance(parsed, dict):
            self._send_error_json(400, "The request body must be a JSON object.")
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        faults, fail = replay._on_request(parsed, headers, path)
        if fail:
            assert faults.status is not None
            extra = []
            if faults.retry_after is not None:
                extra.append(("Retry-After", f"{faults.retry_after:g}"))
            self._send_bytes(faults.status, _fault_error_body(faults.status), extra=extra)
            return
        try:
            rendered, shape = replay._render(parsed, responses=path == "/v1/responses")
        except Exception as error:  # a chooser bug or a bad completion: tell the client
            self._send_error_json(
                500, f"replay server could not render a completion: {error!r}", type_="server_error"
            )
            return
        stop = replay._stop_event
        if not shape.stream:
            self._send_json_answer(rendered.json_body, faults, stop)
        else:
            self._send_stream(rendered, faults, stop, responses=shape.responses)

    def _send_json_answer(self, body: bytes, faults: Faults, stop: threading.Event) -> None:
        if faults.stall_after is not None and stop.wait(faults.stall_seconds):
            self._abort()
            return
        if faults.cut_after is not None:
            head = self._head(
                200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            self.connection.sendall(head + body[: len(body) // 2])
            self._abort()
            return
        self._send_bytes(200, body)

    def _send_stream(
        self, rendered: _Rendered, faults: Faults, stop: threading.Event, *, responses: bool
    ) -> None:
        chunked = self._chunked
        if not chunked:
            self.close_connection = True  # HTTP/1.0: the body ends with the connection
        headers = [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
        ]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        head = self._head(200, headers)
        if faults._streams_plainly:
            if chunked:
                self.connection.sendall(head + rendered.chunked_body)
            else:
                self.connection.sendall(head + b"".join(rendered.events))
            return

        events = list(rendered.events)
        if faults.malformed_at is not None and faults.malformed_at < len(events):
            events[faults.malformed_at] = _malformed(events[faults.malformed_at])
        if faults.invalid_utf8_at is not None and faults.invalid_utf8_at < len(events):
            events[faults.invalid_utf8_at] = _invalid_utf8(events[faults.invalid_utf8_at])
        if faults.error_event_at is not None and faults.error_event_at < len(events):
            at = faults.error_event_at
            error = stream_error_event(at) if responses else _STREAM_ERROR_EVENT
            events = events[:at] + [error]
        self.connection.sendall(head)
        # Index len(events) stands for the end of the body (the last chunk).
        for index in range(len(events) + 1):
            if faults.cut_after is not None and index >= faults.cut_after:
                self._abort()
                return
            if faults.stall_after == index and stop.wait(faults.stall_seconds):
                self._abort()
                return
            if index == len(events):
                break
            if faults.chunk_delay and stop.wait(faults.chunk_delay):
                self._abort()
                return
            event = events[index]
            self.connection.sendall(_frame(event) if chunked else event)
        if chunked:
            self.connection.sendall(_LAST_CHUNK)
