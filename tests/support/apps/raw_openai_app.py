"""A plain `openai` app: no telemetry code at all (run it under `opentelemetry-instrument`).

Makes four chat calls on the server at OPENAI_BASE_URL (invoke, stream, a stream left early,
an async stream) and writes, one JSON line per call, the logprobs it saw to $APP_OUTPUT.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import openai

MESSAGES: list[Any] = [{"role": "user", "content": "how are you today?"}]
OPTIONS: dict[str, Any] = {"model": "gpt-4o", "logprobs": True, "top_logprobs": 2}


def _chunk_logprobs(chunk: Any) -> list[float]:
    return [
        entry.logprob
        for choice in chunk.choices
        if choice.logprobs is not None
        for entry in choice.logprobs.content or []
    ]


async def _async_stream() -> list[float]:
    async with openai.AsyncOpenAI(api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(messages=MESSAGES, stream=True, **OPTIONS)
        return [lp async for chunk in stream for lp in _chunk_logprobs(chunk)]


def main() -> None:
    calls: list[dict[str, Any]] = []
    with openai.OpenAI(api_key="k", max_retries=0) as client:
        result = client.chat.completions.create(messages=MESSAGES, **OPTIONS)
        content = result.choices[0].logprobs
        calls.append({"call": "invoke", "logprobs": [e.logprob for e in content.content or []]})

        stream = client.chat.completions.create(messages=MESSAGES, stream=True, **OPTIONS)
        calls.append(
            {"call": "stream", "logprobs": [lp for c in stream for lp in _chunk_logprobs(c)]}
        )

        seen: list[float] = []
        with client.chat.completions.create(messages=MESSAGES, stream=True, **OPTIONS) as early:
            for chunk in early:
                seen.extend(_chunk_logprobs(chunk))
                if len(seen) >= 3:
                    break
        calls.append({"call": "left early", "logprobs": seen})
    calls.append({"call": "async stream", "logprobs": asyncio.run(_async_stream())})
    with open(os.environ["APP_OUTPUT"], "w", encoding="utf-8") as out:
        for call in calls:
            out.write(json.dumps(call) + "\n")


if __name__ == "__main__":
    main()
