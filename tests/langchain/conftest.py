"""Fixtures of the LangChain handler tests: langchain_openai models on a replay server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
import pytest
from langchain_openai import ChatOpenAI as LangChainChatOpenAI

from logprobscope.testing import ReplayServer
from tests.support.factories import LangChainFactory


@pytest.fixture
async def make_lc_model() -> AsyncIterator[LangChainFactory]:
    """langchain_openai.ChatOpenAI models on a server with their own HTTP clients.

    LangChain otherwise shares one cached async HTTP client per base URL across event loops;
    the clients are closed after the test, on the test's own loop.
    """
    made: list[tuple[Any, Any]] = []

    def factory(server: ReplayServer, **kwargs: Any) -> LangChainChatOpenAI:
        sync_http = openai.DefaultHttpxClient()
        async_http = openai.DefaultAsyncHttpxClient()
        made.append((sync_http, async_http))
        options: Mapping[str, Any] = {
            "model": "gpt-4o",
            "base_url": server.base_url,
            "api_key": "test-key",
            "max_retries": 0,
            "timeout": 10.0,
            "http_client": sync_http,
            "http_async_client": async_http,
            **kwargs,
        }
        return LangChainChatOpenAI(**options)

    yield factory
    for sync_http, async_http in made:
        sync_http.close()
        await async_http.aclose()
