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
`sendall`; connections are kept alive, as the SDK's pool expects.

Pacing (off by default): `--ttft-ms F` waits F ms before the first SSE event of a stream (the
head goes out with it) and before a non-streamed answer; `--chunk-ms F` waits F ms between
consecutive SSE events (role, tokens, finish, usage, `[DONE]`), so a streamed answer of N
tokens takes about ttft + (N + 3) * chunk ms, roughly like a hosted model. A paced stream is
written as its pre-serialised HTTP chunks one by one with `time.sleep` in between (the
connection's thread sleeps, it burns no CPU); unpaced, the single `sendall` is unchanged.

This is deliberately not `logprobscope.testing.ReplayServer`: that one renders per request
with switches for deviations and faults, while here the per-request cost must be a
dictionary lookup.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import sys
import threading
import time

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


def _stream_writes(n: int) -> list[bytes]:
    """A streamed answer as one write per SSE event: the head goes with the first event, the
    chunked-transfer terminator with the last (`[DONE]`)."""
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        "transfer-encoding: chunked\r\n" + _COMMON + "\r\n"
    ).encode()
    writes: list[bytes] = []
    for payload in [*stream_events(n), "[DONE]"]:
        frame = f"data: {payload}\n\n".encode()
        writes.append(b"%x\r\n%s\r\n" % (len(frame), frame))
    writes[0] = head + writes[0]
    writes[-1] += b"0\r\n\r\n"
    return writes


def _stream_response(n: int) -> bytes:
    return b"".join(_stream_writes(n))


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


_paced_cache: dict[int, list[bytes]] = {}


def _paced_writes(body: bytes) -> tuple[bool, list[bytes]]:
    """(is the answer a model's, its writes): one per SSE event for a stream, else one."""
    match = _MODEL_RE.search(body)
    if match is None:
        return False, [_error_response(404, 'use "model": "bench-<N>"')]
    n = int(match.group(1))
    if _STREAM_RE.search(body) is None:
        return True, [_answer(body)]
    with _cache_lock:
        writes = _paced_cache.get(n)
        if writes is None:
            writes = _paced_cache[n] = _stream_writes(n)
    return True, writes


def _send_paced(conn: socket.socket, body: bytes, ttft: float, gap: float) -> None:
    """Write an answer at a model's pace: `ttft` s before the first event, `gap` s between."""
    is_model, writes = _paced_writes(body)
    if is_model and ttft > 0:
        time.sleep(ttft)
    for i, data in enumerate(writes):
        if i and gap > 0:
            time.sleep(gap)
        conn.sendall(data)


def _serve_connection(conn: socket.socket, ttft: float = 0.0, gap: float = 0.0) -> None:
    paced = ttft > 0 or gap > 0
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
                if paced:
                    _send_paced(conn, body, ttft, gap)
                else:
                    conn.sendall(_answer(body))
            except OSError:
                return


def serve(
    port: int = 0, *, warm: tuple[int, ...] = (), ttft_ms: float = 0.0, chunk_ms: float = 0.0
) -> None:
    """Listen on 127.0.0.1 and answer forever; print `PORT <n>` once the answers are ready.

    `ttft_ms` / `chunk_ms` pace the answers like a model (see the module's docstring).
    """
    if ttft_ms < 0 or chunk_ms < 0:
        raise ValueError("ttft_ms and chunk_ms must be >= 0")
    paced = ttft_ms > 0 or chunk_ms > 0
    for n in warm:
        for stream in (True, False):
            body = f'{{"model":"bench-{n}","stream":{"true" if stream else "false"}}}'.encode()
            _answer(body)
            if paced:
                _paced_writes(body)
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    args = (ttft_ms / 1e3, chunk_ms / 1e3)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(conn, *args), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--warm", type=int, nargs="*", default=[], help="pre-build answers of these sizes"
    )
    parser.add_argument(
        "--ttft-ms",
        type=float,
        default=0.0,
        help="delay before a stream's first SSE event and before a non-streamed answer",
    )
    parser.add_argument(
        "--chunk-ms", type=float, default=0.0, help="delay between consecutive SSE events"
    )
    args = parser.parse_args(argv)
    try:
        serve(args.port, warm=tuple(args.warm), ttft_ms=args.ttft_ms, chunk_ms=args.chunk_ms)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
