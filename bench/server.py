"""A loopback OpenAI-compatible server for the bench: pre-serialised answers, no work per request.

Run it as its own process (`python bench/server.py`, it prints `PORT <n>` when ready) so its
CPU time is never counted against the client being measured.

`POST /v1/chat/completions` with `"model": "bench-<N>"` answers with N content tokens, every
token with its logprob and 3 top alternatives, in OpenAI's wire format:

* `stream: true`: a role-only chunk, N one-token chunks, a finish chunk, a usage chunk
  (OpenAI sends it when `stream_options.include_usage` is set; it is always sent here) and
  `data: [DONE]`, as HTTP/1.1 chunked transfer with one SSE event per HTTP chunk, like
  OpenAI's own servers.
* otherwise: one `chat.completion` with the same N tokens (Content-Length).

Whole responses (head and body) are built once per (N, stream) and then written with one
`sendall`; connections are kept alive, as the SDK's pool expects. This is deliberately not
`logprobscope.testing.ReplayServer`: that one renders per request with switches for
deviations and faults, while here the per-request cost must be a dictionary lookup.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import sys
import threading

__all__ = ["completion_body", "serve", "stream_events"]

MODEL = "gpt-4o-2024-08-06"
FINGERPRINT = "fp_50cad350e4"
CREATED = 1_731_000_000
TOP_K = 3

# A small vocabulary with a few non-ASCII tokens, so `bytes` is not always trivially short.
_WORDS = tuple(
    "|the|of|and|to|in|a|is|that|for|it|as|was|with|be|by|on|not|he|I|this|are|or|his|from"
    "|at|which|but|have|an|had|they|you|were|their|one|all|we|can|her|has|there|been|if|more"
    "|when|will|would|who|so|no|café|naïve|über|日本|😊|Thank|today|well|doing".replace(
        "|", "| "
    ).split("|")[1:]
) + (".", ",", "!", "ing", "ed")


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _entry(rng: random.Random, token: str) -> dict[str, object]:
    logprob = -round(rng.expovariate(8.0), 8)
    tops = [{"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}]
    floor = logprob
    while len(tops) < TOP_K:
        alt = rng.choice(_WORDS)
        if any(t["token"] == alt for t in tops):
            continue
        floor = round(floor - rng.uniform(0.5, 4.0), 8)
        tops.append({"token": alt, "logprob": floor, "bytes": list(alt.encode("utf-8"))})
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": tops,
    }


def _tokens(n: int) -> list[dict[str, object]]:
    rng = random.Random(n)
    return [_entry(rng, rng.choice(_WORDS)) for _ in range(n)]


def _usage(n: int) -> dict[str, object]:
    return {
        "prompt_tokens": 13,
        "completion_tokens": n,
        "total_tokens": 13 + n,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def stream_events(n: int) -> list[str]:
    """The `data:` payloads of a streamed answer of n tokens (without `[DONE]`)."""
    cid = f"chatcmpl-bench{n}"
    head = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }

    def event(choices: list[object], usage: object = None) -> str:
        return _dumps({**head, "choices": choices, "usage": usage})

    events = [
        event(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": {"content": [], "refusal": None},
                    "finish_reason": None,
                }
            ]
        )
    ]
    for entry in _tokens(n):
        events.append(
            event(
                [
                    {
                        "index": 0,
                        "delta": {"content": entry["token"]},
                        "logprobs": {"content": [entry], "refusal": None},
                        "finish_reason": None,
                    }
                ]
            )
        )
    events.append(event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    events.append(event([], _usage(n)))
    return events


def completion_body(n: int) -> str:
    """A non-streamed `chat.completion` of n tokens."""
    entries = _tokens(n)
    return _dumps(
        {
            "id": f"chatcmpl-bench{n}",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(str(e["token"]) for e in entries),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": {"content": entries, "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(n),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


_COMMON = "x-request-id: req_bench\r\nopenai-processing-ms: 1\r\nconnection: keep-alive\r\n"


def _stream_response(n: int) -> bytes:
    parts = [
        (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            "transfer-encoding: chunked\r\n" + _COMMON + "\r\n"
        ).encode()
    ]
    for payload in [*stream_events(n), "[DONE]"]:
        frame = f"data: {payload}\n\n".encode()
        parts.append(b"%x\r\n%s\r\n" % (len(frame), frame))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def _json_response(n: int) -> bytes:
    body = completion_body(n).encode()
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n" + _COMMON + "\r\n"
    ).encode()
    return head + body


def _error_response(status: int, message: str) -> bytes:
    body = _dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    return (
        f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    ).encode() + body


_cache: dict[tuple[int, bool], bytes] = {}
_cache_lock = threading.Lock()
_MODEL_RE = re.compile(rb'"model"\s*:\s*"bench-(\d+)"')
_STREAM_RE = re.compile(rb'"stream"\s*:\s*true')


def _answer(body: bytes) -> bytes:
    match = _MODEL_RE.search(body)
    if match is None:
        return _error_response(404, 'use "model": "bench-<N>"')
    key = (int(match.group(1)), _STREAM_RE.search(body) is not None)
    with _cache_lock:
        response = _cache.get(key)
        if response is None:
            response = _cache[key] = (_stream_response if key[1] else _json_response)(key[0])
    return response


def _serve_connection(conn: socket.socket) -> None:
    buf = b""
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            try:
                conn.sendall(_answer(body))
            except OSError:
                return


def serve(port: int = 0, *, warm: tuple[int, ...] = ()) -> None:
    """Listen on 127.0.0.1 and answer forever; print `PORT <n>` once the answers are ready."""
    for n in warm:
        for stream in (True, False):
            _answer(f'{{"model":"bench-{n}","stream":{"true" if stream else "false"}}}'.encode())
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--warm", type=int, nargs="*", default=[], help="pre-build answers of these sizes"
    )
    args = parser.parse_args(argv)
    try:
        serve(args.port, warm=tuple(args.warm))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
