"""Fixtures of the instrumentor tests: every instrumentor is undone after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from logprobscope.instrument import uninstrument_openai
from logprobscope.instrumentation import LangChainInstrumentor, OpenAIInstrumentor
from tests.langchain.conftest import make_lc_model  # noqa: F401  (LangChain models on a server)


@pytest.fixture(autouse=True)
def undone() -> Iterator[None]:
    """Whatever a test instruments, the SDK's and LangChain's classes are left unpatched."""
    yield
    for instrumentor in (OpenAIInstrumentor(), LangChainInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    uninstrument_openai()
