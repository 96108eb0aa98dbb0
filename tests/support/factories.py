"""The types of the factory fixtures (tests/conftest.py), for annotating tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from langchain_openai import ChatOpenAI as LangChainChatOpenAI

from logprobscope import ChatOpenAI
from logprobscope.testing import Completion, Deviations, Faults, ReplayServer


class ServerFactory(Protocol):
    """`make_server`: starts a replay server with any settings."""

    def __call__(
        self,
        completions: Sequence[Completion] | None = None,
        *,
        deviations: Deviations = ...,
        faults: Faults = ...,
        chunk_tokens: int = ...,
    ) -> ReplayServer: ...


class ModelFactory(Protocol):
    """`make_model`: a ChatOpenAI on a server, with its own SDK clients."""

    def __call__(
        self,
        server: ReplayServer,
        *,
        model: str = ...,
        max_retries: int = ...,
        timeout: float = ...,
        **kwargs: Any,
    ) -> ChatOpenAI: ...


LangChainFactory = Callable[..., LangChainChatOpenAI]
"""`make_lc_model`: a langchain_openai.ChatOpenAI on a server, with its own HTTP clients."""
