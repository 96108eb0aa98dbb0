"""Bytes around or instead of a rendered answer.

Chunked transfer framing, the SSE events a fault corrupts or injects, and OpenAI-style
error bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._render import _dumps


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_LAST_CHUNK: Final = b"0\r\n\r\n"


def _data_start(event: bytes) -> int:
    # A Responses event has an `event:` line before its data.
    return event.find(b"data: ") + len(b"data: ")


def _malformed(event: bytes) -> bytes:
    start = _data_start(event)
    payload = event[start:-2]
    return event[:start] + payload[: max(1, len(payload) // 2)] + b"\n\n"


def _invalid_utf8(event: bytes) -> bytes:
    for marker in (b'"content":"', b'"delta":"', b'"id":"'):
        position = event.find(marker)
        if position >= 0:
            cut = position + len(marker)
            return event[:cut] + b"\xff\xfe" + event[cut:]
    cut = _data_start(event)
    return event[:cut] + b"\xff\xfe" + event[cut:]


_ERROR_TYPES: Final[Mapping[int, tuple[str, str, str | None]]] = {
    400: ("Bad request (replay fault).", "invalid_request_error", None),
    401: ("Incorrect API key provided (replay fault).", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model (replay fault).", "invalid_request_error", None),
    404: ("The model does not exist (replay fault).", "invalid_request_error", "model_not_found"),
    408: ("Request timed out (replay fault).", "server_error", None),
    409: ("Conflict (replay fault).", "invalid_request_error", None),
    422: ("Unprocessable entity (replay fault).", "invalid_request_error", None),
    429: ("Rate limit reached (replay fault).", "requests", "rate_limit_exceeded"),
    500: (
        "The server had an error while processing your request (replay fault).",
        "server_error",
        None,
    ),
    502: ("Bad gateway (replay fault).", "server_error", None),
    503: (
        "The engine is currently overloaded, please try again later (replay fault).",
        "server_error",
        None,
    ),
}


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _fault_error_body(status: int) -> bytes:
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    message, type_, code = _ERROR_TYPES.get(
        status, (f"Error {status} (replay fault).", default_type, None)
    )
    return _error_body(message, type_, code)


_STREAM_ERROR_EVENT: Final = (
    b"data: "
    + _dumps(
        {
            "error": {
                "message": "The server had an error while processing your request (replay fault).",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    )
    + b"\n\n"
)
