"""The entry points take the same options the same way: keyword-only `telemetry=` to share one
`LogprobTelemetry`, or the options by name; and they find the server the same way."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from logprobscope._endpoint import server_address_port
from logprobscope.instrument import _MARK, instrument_openai
from logprobscope.langchain import LogprobsCallbackHandler
from logprobscope.otel import LogprobTelemetry, OpenTelemetryCallbackHandler, TelemetryOptions
from tests.support.otel import InMemoryOtel

pytestmark = pytest.mark.usefixtures("no_global_instrumentation")


@pytest.fixture
def client() -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k") as sdk:
        yield sdk


def _instrumented(client: openai.OpenAI, **arguments: Any) -> LogprobTelemetry:
    instrument_openai(client, **arguments)
    state = getattr(vars(client.chat.completions)["create"], _MARK)
    telemetry: LogprobTelemetry = state.telemetry
    return telemetry


def _entry_points(client: openai.OpenAI) -> dict[str, Callable[..., LogprobTelemetry]]:
    return {
        "LogprobTelemetry": lambda **kw: LogprobTelemetry(**kw),
        "OpenTelemetryCallbackHandler": lambda **kw: OpenTelemetryCallbackHandler(**kw).telemetry,
        "LogprobsCallbackHandler": lambda **kw: LogprobsCallbackHandler(**kw).telemetry,
        "instrument_openai": lambda **kw: _instrumented(client, **kw),
    }


@pytest.mark.parametrize(
    "name",
    [
        "LogprobTelemetry",
        "OpenTelemetryCallbackHandler",
        "LogprobsCallbackHandler",
        "instrument_openai",
    ],
)
def test_every_entry_point_takes_the_same_options(
    client: openai.OpenAI, otel: InMemoryOtel, name: str
) -> None:
    make = _entry_points(client)[name]
    options = {
        "tracer_provider": otel.tracer_provider,
        "meter_provider": otel.meter_provider,
        "capture_content": True,
        "events": "low_confidence",
        "low_confidence_threshold": 0.125,
    }
    made = make(**options)
    assert made.options == TelemetryOptions(**options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^events must be one of"):
        make(events="all")
    with pytest.raises(ValueError, match="^low_confidence_threshold must be"):
        make(low_confidence_threshold=2)


@pytest.mark.parametrize(
    "name", ["OpenTelemetryCallbackHandler", "LogprobsCallbackHandler", "instrument_openai"]
)
def test_every_entry_point_shares_a_telemetry_given_by_keyword(
    client: openai.OpenAI, otel: InMemoryOtel, name: str
) -> None:
    make = _entry_points(client)[name]
    assert make(telemetry=otel.telemetry) is otel.telemetry
    with pytest.raises(TypeError, match=r"^pass telemetry= or its options \(events\), not both$"):
        make(telemetry=otel.telemetry, events="batched")


def test_telemetry_is_keyword_only_everywhere(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    for entry_point in (OpenTelemetryCallbackHandler, LogprobsCallbackHandler, instrument_openai):
        parameters = inspect.signature(entry_point).parameters
        assert parameters["telemetry"].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD
    with pytest.raises(TypeError):
        LogprobsCallbackHandler(otel.telemetry)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        instrument_openai(client, otel.telemetry)  # type: ignore[call-arg]


def test_both_handlers_count_their_open_calls(otel: InMemoryOtel) -> None:
    assert OpenTelemetryCallbackHandler(telemetry=otel.telemetry).active_calls == 0
    assert LogprobsCallbackHandler(telemetry=otel.telemetry).active_calls == 0


# -- the server behind a base URL ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", ("api.openai.com", 443)),
        ("http://localhost/v1", ("localhost", 80)),
        ("http://127.0.0.1:8000/v1", ("127.0.0.1", 8000)),
        ("https://Example.COM:8443", ("example.com", 8443)),
        ("http://[::1]:11434/v1", ("::1", 11434)),
        ("not a url", (None, None)),
        ("http://host:port/v1", (None, None)),
        ("", (None, None)),
    ],
)
def test_server_address_port_of_a_string(url: str, expected: tuple[str | None, int | None]) -> None:
    assert server_address_port(url) == expected


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.openai.com/v1", ("api.openai.com", 443)),
        ("http://127.0.0.1:8000/v1", ("127.0.0.1", 8000)),
        ("http://localhost/v1", ("localhost", 80)),
    ],
)
def test_server_address_port_of_the_sdk_base_url(base_url: str, expected: tuple[str, int]) -> None:
    with openai.OpenAI(base_url=base_url, api_key="k") as sdk:
        assert server_address_port(sdk.base_url) == expected
        assert server_address_port(str(sdk.base_url)) == expected
