"""The three examples of the logprobs guide, in Python: invoke, stream, top_logprobs.

With OPENAI_API_KEY or OPENAI_BASE_URL set this talks to that endpoint; otherwise it
starts the replay server from `logprobscope.testing` on 127.0.0.1 and says so.

    python examples/quickstart.py
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from logprobscope import AIMessageChunk, ChatOpenAI
from logprobscope.testing import ReplayServer


def main() -> None:
    with ExitStack() as stack:
        base_url = None
        if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
            server = stack.enter_context(ReplayServer())
            base_url = server.base_url
            print(
                f"No OPENAI_API_KEY or OPENAI_BASE_URL: replaying recorded answers from {base_url}"
            )
        model_name = os.environ.get("LOGPROBSCOPE_MODEL", "gpt-4o")

        print("\n1. invoke: the first five tokens")
        model = ChatOpenAI(model=model_name, logprobs=True, base_url=base_url)
        message = model.invoke("how are you today?")
        content = (
            message.response_metadata.logprobs.content if message.response_metadata.logprobs else []
        )
        for token in (content or [])[:5]:
            print(f"   {token!r}")

        print("\n2. stream: the aggregate after each of the first chunks")
        agg: AIMessageChunk | None = None
        for count, chunk in enumerate(model.stream("How are you today?")):
            if count > 5:
                break  # the run ends as incomplete; the stream is closed
            agg = chunk if agg is None else agg + chunk
            logprobs = agg.response_metadata.logprobs
            print(f"   {[t.token for t in (logprobs.content or [])] if logprobs else None}")

        print("\n3. top_logprobs=3: alternatives of the first two tokens")
        top_model = ChatOpenAI(model=model_name, logprobs=True, top_logprobs=3, base_url=base_url)
        result = top_model.invoke("how are you today?")
        tokens = (
            result.response_metadata.logprobs.content if result.response_metadata.logprobs else None
        )
        for token in (tokens or [])[:2]:
            alternatives = ", ".join(f"{t.token!r} {t.logprob:.4f}" for t in token.top_logprobs)
            print(f"   {token.token!r} {token.logprob:.4f} <- [{alternatives}]")


if __name__ == "__main__":
    main()
