"""A plain LangChain app: no handler, no telemetry code (run it under `opentelemetry-instrument`).

Runs a chat model on the server at OPENAI_BASE_URL four ways (invoke, stream, in a chain,
async stream) and writes, one JSON line per run, the logprobs it saw to $APP_OUTPUT.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

PROMPT = "how are you today?"


def _logprobs(message: Any) -> list[float]:
    content = (message.response_metadata.get("logprobs") or {}).get("content") or []
    return [float(entry["logprob"]) for entry in content]


async def _async_stream(model: ChatOpenAI) -> list[float]:
    return [lp async for chunk in model.astream(PROMPT) for lp in _logprobs(chunk)]


def main() -> None:
    # The key is not checked by the local server; the base URL comes from OPENAI_BASE_URL.
    model = ChatOpenAI(
        model="gpt-4o", api_key=SecretStr("k"), logprobs=True, top_logprobs=2, max_retries=0
    )
    calls: list[dict[str, Any]] = []
    calls.append({"call": "invoke", "logprobs": _logprobs(model.invoke(PROMPT))})
    streamed = [lp for chunk in model.stream(PROMPT) for lp in _logprobs(chunk)]
    calls.append({"call": "stream", "logprobs": streamed})
    chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | model
    calls.append({"call": "chain", "logprobs": _logprobs(chain.invoke({"question": PROMPT}))})
    calls.append({"call": "async stream", "logprobs": asyncio.run(_async_stream(model))})
    with open(os.environ["APP_OUTPUT"], "w", encoding="utf-8") as out:
        for call in calls:
            out.write(json.dumps(call) + "\n")


if __name__ == "__main__":
    main()
