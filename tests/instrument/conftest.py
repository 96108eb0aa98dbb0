"""Fixtures of the raw-client instrumentation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from logprobscope.instrument import uninstrument_openai


@pytest.fixture
def no_global_instrumentation() -> Iterator[None]:
    """Whatever a test does, the SDK's classes are left unpatched."""
    yield
    uninstrument_openai()
