"""Coverage-guided fuzzing (atheris) of the stream path's decoding.

Feeds arbitrary bytes, split at fuzzer-chosen points, through the SSE parser and the chunk
decoder, then reads the result the way users and handlers do. Anything but the documented
exceptions (`ValueError` for a payload that is not JSON or not UTF-8, `openai.APIError`
for an in-stream error object) is a crash.

    .venv/bin/python fuzz/fuzz_decode.py -runs=200000      # or -max_total_time=600
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import openai

    from logprobscope._sse import DONE, SSEParser
    from logprobscope._wire import StreamAccumulator, loads, message_from_completion


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = sorted(fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 4), 0, 64))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    parser = SSEParser()
    acc = StreamAccumulator()
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    try:
        payloads = [p for piece in pieces for p in parser.feed(piece)] + parser.flush()
        for payload in payloads:
            if payload == DONE:
                break
            decoded = loads(payload)
            if isinstance(decoded, dict):
                if decoded.get("error"):
                    raise openai.APIError("in-stream error", None, body=decoded)  # type: ignore[arg-type]
                message_from_completion(decoded).model_dump_json()
            chunk = acc.feed(decoded)
            if chunk is not None:
                chunk.model_dump()
    except (ValueError, openai.APIError):
        return
    message = acc.message(incomplete=False)
    message.model_dump_json()
    repr(message)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
