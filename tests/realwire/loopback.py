"""A loopback HTTP server that answers recorded bytes exactly, and records what it was sent.

Standard library only, bound to 127.0.0.1, stopped cleanly (`with Loopback(...) as srv`).
Every POST gets the same answer: the recorded status, content type and body, the body
byte for byte. A JSON body goes out with a Content-Length; an event stream with chunked
transfer encoding, cut into HTTP chunks of the given sizes (the recorder's own, or
random ones from a seed), so the client sees the bytes split anywhere, even inside a
UTF-8 sequence or between the CR and LF of a line end.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


def random_sizes(total: int, seed: int) -> list[int]:
    """HTTP chunk sizes adding up to `total`: often tiny (1-16 bytes), sometimes large."""
    rng = random.Random(seed)
    sizes: list[int] = []
    left = total
    while left > 0:
        size = rng.randint(1, 16) if rng.random() < 0.5 else rng.randint(17, 4096)
        size = min(size, left)
        sizes.append(size)
        left -= size
    return sizes


def utf8_sizes(body: bytes) -> list[int]:
    """HTTP chunk sizes that cut inside every multi-byte UTF-8 character of `body`."""
    cuts = [i for i in range(1, len(body)) if 0x80 <= body[i] <= 0xBF]
    bounds = [0, *cuts, len(body)]
    return [b - a for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def recorded_sizes(total: int, sizes: Sequence[int] | None) -> list[int]:
    """The recorder's chunk sizes when it kept them (and they add up), else one chunk."""
    if sizes and sum(sizes) == total:
        return list(sizes)
    return [total]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle kept-alive connection's thread ends on its own
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(json.loads(raw))
            owner.paths.append(self.path)
        body = owner.body
        self.send_response(owner.status)
        self.send_header("Content-Type", owner.content_type)
        if owner.sizes is None:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        position = 0
        for size in owner.sizes:
            piece = body[position : position + size]
            position += size
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Loopback


class Loopback:
    """Answers every POST with `body`; `requests` holds the JSON bodies it received.

    `sizes` (HTTP chunk sizes adding up to len(body)) sends the body chunked; None sends
    it with a Content-Length.
    """

    def __init__(
        self,
        body: bytes,
        *,
        content_type: str,
        status: int = 200,
        sizes: Sequence[int] | None = None,
    ) -> None:
        if sizes is not None and sum(sizes) != len(body):
            raise ValueError("the chunk sizes must add up to the body's length")
        self.body = body
        self.content_type = content_type
        self.status = status
        self.sizes = None if sizes is None else list(sizes)
        self.requests: list[object] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> Loopback:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
