"""`ReplayServer`: lifecycle, choosing a completion per request, and the caches.

The encoded bytes of every (completion, request shape) pair are cached: per index for a
sequence of completions, per returned object (the last 256) for a chooser.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, TypeAlias

from ._completions import Completion
from ._faults import _NO_DEVIATIONS, _NO_FAULTS, Deviations, Faults
from ._http import _HTTPServer
from ._render import (
    _check_completion,
    _Rendered,
    _Renderer,
    _request_shape,
    _requested_top_logprobs,
    _Shape,
)
from ._responses import (
    render_responses_json,
    render_responses_stream,
    responses_shape,
    seed_view,
)
from ._seeds import (
    _SEED_INVOKE_INDEX,
    _SEED_STREAM_INDEX,
    _SEED_STRUCTURED_INDEX,
    _SEED_TOOL_ANSWER_INDEX,
    _SEED_TOOL_CALL_INDEX,
    _SEED_TOP_INDEX,
    _SEEDS,
)
from ._wire import _LAST_CHUNK, _frame

__all__ = ["CompletionChooser", "ReplayServer"]

CompletionChooser: TypeAlias = Callable[[Mapping[str, object]], Completion]
"""Chooses the completion to answer with, given the parsed request body."""

_STOP_JOIN_SECONDS: Final = 5.0
_CHOSEN_CACHE_SIZE: Final = 256


@dataclass(frozen=True)
class _ChosenEntry:
    completion: Completion
    renderer: _Renderer
    rendered: dict[_Shape, _Rendered]


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback address, got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback address, got {host!r}")


class ReplayServer:
    """An OpenAI-compatible chat completions server on a loopback address.

    Args:
        completions: The answers: a sequence served round-robin, or a callable
            choosing one given the parsed request body.  Default: the seed
            completions, chosen by request: a ``json_schema`` or ``json_object``
            ``response_format`` gets :data:`SEED_STRUCTURED`; else ``tools`` get
            :data:`SEED_TOOL_ANSWER` when the last message is a tool result and
            :data:`SEED_TOOL_CALL` otherwise; else ``top_logprobs >= 1`` gets
            :data:`SEED_TOP_LOGPROBS`, else ``stream: true`` gets
            :data:`SEED_STREAM`, else :data:`SEED_INVOKE`.  A sequence is
            deep-copied.  A callable's results are cached by identity (the
            same dict object gives the same bytes; the last 256 objects are
            kept): return a new dict rather than mutate one already returned.
        host: A loopback address (anything else is refused).
        port: The port; 0 picks a free one.
        deviations: How to deviate from OpenAI's wire format.
        faults: Faults to inject (see :meth:`set_faults`).
        chunk_tokens: Tokens per streamed content chunk.
        record_requests: Keep :attr:`requests` and :attr:`request_headers`
            (turn off for long benchmarks).

    The same completions answer ``POST /v1/responses`` as the Responses API
    shapes them (see :mod:`logprobscope.testing`); a callable then gets the
    Responses request body, and the seed completions are chosen by its
    ``text.format``, ``tools``, last ``input`` item (a ``function_call_output``
    answers a tool call), ``top_logprobs`` and ``stream`` alike.

    Attributes:
        requests: Every parsed JSON object body received on the chat
            completions and responses endpoints, in arrival order.
        request_headers: The headers of each of those requests (names
            lower-cased), index for index.
        request_paths: The endpoint of each of those requests
            (``"/v1/chat/completions"`` or ``"/v1/responses"``), index for index.
    """

    def __init__(
        self,
        completions: Sequence[Completion] | CompletionChooser | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        deviations: Deviations = _NO_DEVIATIONS,
        faults: Faults = _NO_FAULTS,
        chunk_tokens: int = 1,
        record_requests: bool = True,
    ) -> None:
        _check_loopback(host)
        if chunk_tokens < 1:
            raise ValueError("chunk_tokens must be >= 1")
        self._chooser: CompletionChooser | None = None
        self._completions: tuple[Completion, ...]
        if completions is None:
            self._completions = _SEEDS
            self._default = True
        elif callable(completions):
            self._chooser = completions
            self._completions = ()
            self._default = False
        else:
            if not completions:
                raise ValueError("completions must not be empty")
            self._completions = tuple(
                _check_completion(copy.deepcopy(completion)) for completion in completions
            )
            self._default = False
        self._host = host
        self._requested_port = port
        self._deviations = deviations
        self._faults = faults
        self._fault_failures = 0
        self._chunk_tokens = chunk_tokens
        self._record = record_requests
        self.requests: list[dict[str, object]] = []
        self.request_headers: list[dict[str, str]] = []
        self.request_paths: list[str] = []
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._round_robin = itertools.count()
        self._request_ids = itertools.count(1)
        self._renderers: list[_Renderer | None] = [None] * len(self._completions)
        self._cache: dict[tuple[int, _Shape], _Rendered] = {}
        self._chosen: OrderedDict[int, _ChosenEntry] = OrderedDict()
        self._served_models: dict[str, None] = {}
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> ReplayServer:
        """Bind the socket and serve from a daemon thread; return ``self``.

        Idempotent while running; a stopped server can be started again.
        """
        with self._state_lock:
            if self._httpd is not None:
                return self
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            self._stop_event = threading.Event()
            httpd = _HTTPServer((self._host, self._requested_port), self, family)
            self._port = int(httpd.server_address[1])
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"replay-server-{self._port}",
                daemon=True,
            )
            thread.start()
            self._httpd = httpd
            self._thread = thread
            return self

    def stop(self) -> None:
        """Shut down, end in-flight answers (stalls included) and close the socket.

        Idempotent and bounded in time: connections still open are shut down,
        and their daemon threads are joined for a few seconds at most.
        """
        with self._state_lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = None
            self._thread = None
            if httpd is None:
                return
            self._stop_event.set()
            deadline = time.monotonic() + _STOP_JOIN_SECONDS
            httpd.shutdown()
            httpd.abort_connections()
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
            httpd.join_connections(deadline)
            httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v1"

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    @property
    def deviations(self) -> Deviations:
        """The deviations in force."""
        return self._deviations

    def set_faults(self, faults: Faults) -> None:
        """Change the faults for the next requests (resets the ``fail_first`` count)."""
        with self._lock:
            self._faults = faults
            self._fault_failures = 0

    # -- request handling (called from the connection threads) -----------------

    def _on_request(
        self, body: dict[str, object], headers: dict[str, str], path: str
    ) -> tuple[Faults, bool]:
        with self._lock:
            if self._record:
                self.requests.append(body)
                self.request_headers.append(headers)
                self.request_paths.append(path)
            faults = self._faults
            fail = False
            if faults.status is not None:
                if faults.fail_first == 0 or self._fault_failures < faults.fail_first:
                    fail = True
                    self._fault_failures += 1
            return faults, fail

    def _choose(self, body: Mapping[str, object]) -> tuple[int | None, Completion]:
        if self._chooser is not None:
            completion = _check_completion(self._chooser(body))
            model = completion.get("model")
            if isinstance(model, str):
                with self._lock:
                    self._served_models[model] = None
            return None, completion
        if self._default:
            response_format = body.get("response_format")
            messages = body.get("messages")
            last = messages[-1] if isinstance(messages, list) and messages else None
            if isinstance(response_format, Mapping) and response_format.get("type") in (
                "json_schema",
                "json_object",
            ):
                index = _SEED_STRUCTURED_INDEX
            elif body.get("tools"):
                answered = isinstance(last, Mapping) and last.get("role") == "tool"
                index = _SEED_TOOL_ANSWER_INDEX if answered else _SEED_TOOL_CALL_INDEX
            elif _requested_top_logprobs(body, self._deviations) >= 1:
                index = _SEED_TOP_INDEX
            elif body.get("stream") is True:
                index = _SEED_STREAM_INDEX
            else:
                index = _SEED_INVOKE_INDEX
        else:
            index = next(self._round_robin) % len(self._completions)
        return index, self._completions[index]

    def _renderer(self, index: int) -> _Renderer:
        renderer = self._renderers[index]
        if renderer is None:
            renderer = _Renderer(self._completions[index], self._deviations, self._chunk_tokens)
            self._renderers[index] = renderer
        return renderer

    def _render(
        self, body: Mapping[str, object], *, responses: bool = False
    ) -> tuple[_Rendered, _Shape]:
        if responses:
            shape = responses_shape(body, self._deviations)
            chosen_by = seed_view(body) if self._default else body
        else:
            shape = _request_shape(body, self._deviations)
            chosen_by = body
        index, completion = self._choose(chosen_by)
        if index is not None:
            cached = self._cache.get((index, shape))
            if cached is not None:
                return cached, shape
            renderer = self._renderer(index)
        else:
            entry = self._chosen_entry(completion)
            cached = entry.rendered.get(shape)
            if cached is not None:
                return cached, shape
            renderer = entry.renderer
        if shape.stream:
            if responses:
                events = render_responses_stream(renderer, shape)
            else:
                events = renderer.render_stream(shape)
            rendered = _Rendered(events=events, chunked_body=_frame(b"".join(events)) + _LAST_CHUNK)
        elif responses:
            rendered = _Rendered(json_body=render_responses_json(renderer, shape))
        else:
            rendered = _Rendered(json_body=renderer.render_json(shape))
        if index is not None:
            self._cache[(index, shape)] = rendered
        else:
            entry.rendered[shape] = rendered
        return rendered, shape

    def _chosen_entry(self, completion: Completion) -> _ChosenEntry:
        key = id(completion)
        with self._lock:
            entry = self._chosen.get(key)
            if entry is not None and entry.completion is completion:
                self._chosen.move_to_end(key)
                return entry
        entry = _ChosenEntry(
            completion, _Renderer(completion, self._deviations, self._chunk_tokens), {}
        )
        with self._lock:
            self._chosen[key] = entry  # holds the object, so its id is not reused meanwhile
            self._chosen.move_to_end(key)
            while len(self._chosen) > _CHOSEN_CACHE_SIZE:
                self._chosen.popitem(last=False)
        return entry

    def _models(self) -> list[str]:
        models: dict[str, None] = {}
        for completion in self._completions:
            model = completion.get("model")
            if isinstance(model, str):
                models[model] = None
        with self._lock:
            models.update(self._served_models)
        return list(models)
