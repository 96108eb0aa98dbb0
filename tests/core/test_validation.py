"""Invalid parameters fail before any request, with a clear message.

Each case is checked on the constructor (where it applies) and on every method's per-call
options; the replay server must have received nothing.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import openai
import pytest

from logprobscope import AIMessage, BaseCallbackHandler, ChatOpenAI, HumanMessage
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory

CallFn = Callable[[ChatOpenAI, Any, dict[str, Any]], object]


def _invoke(model: ChatOpenAI, prompt: Any, options: dict[str, Any]) -> object:
    return model.invoke(prompt, **options)


def _stream(model: ChatOpenAI, prompt: Any, options: dict[str, Any]) -> object:
    return model.stream(prompt, **options)  # raises at the call, before any next()


def _batch(model: ChatOpenAI, prompt: Any, options: dict[str, Any]) -> object:
    return model.batch([prompt, prompt], **options)


SYNC_CALLS: dict[str, CallFn] = {"invoke": _invoke, "stream": _stream, "batch": _batch}

AsyncCallFn = Callable[[ChatOpenAI, Any, dict[str, Any]], Awaitable[object]]


async def _ainvoke(model: ChatOpenAI, prompt: Any, options: dict[str, Any]) -> object:
    return await model.ainvoke(prompt, **options)


async def _astream(model: ChatOpenAI, prompt: Any, options: dict[str, Any]) -> object:
    return model.astream(prompt, **options)


async def _abatch(model: ChatOpenAI, prompt: Any, options: dict[str, Any]) -> object:
    return await model.abatch([prompt, prompt], **options)


ASYNC_CALLS: dict[str, AsyncCallFn] = {"ainvoke": _ainvoke, "astream": _astream, "abatch": _abatch}

# (options, exception type, a piece of the message)
BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"logprobs": True, "top_logprobs": -1}, ValueError, "top_logprobs must be from 0 to 20"),
    ({"logprobs": True, "top_logprobs": 21}, ValueError, "top_logprobs must be from 0 to 20"),
    ({"logprobs": True, "top_logprobs": 3.5}, TypeError, "top_logprobs must be an integer"),
    ({"logprobs": True, "top_logprobs": True}, TypeError, "top_logprobs must be an integer"),
    ({"top_logprobs": 3}, ValueError, "top_logprobs needs logprobs=True"),
    ({"logprobs": False, "top_logprobs": 0}, ValueError, "top_logprobs needs logprobs=True"),
    ({"logprobs": "yes"}, TypeError, "logprobs must be True or False"),
    ({"model": ""}, ValueError, "model must be a non-empty string"),
    ({"model": "   "}, ValueError, "model must be a non-empty string"),
    ({"n": 2}, ValueError, "n > 1 is not supported"),
    ({"n": 0}, ValueError, "n must be a positive integer"),
    ({"stop": 5}, TypeError, "stop must be a string or a list of strings"),
    ({"stop": ["a", 1]}, TypeError, "stop must be a string or a list of strings"),
    ({"temperature": math.nan}, TypeError, "temperature must be a number"),
    ({"temperature": -0.5}, ValueError, "temperature must be >= 0"),
    ({"temperature": math.inf}, ValueError, "temperature must be finite"),
    ({"top_p": -math.inf}, ValueError, "top_p must be finite"),
    ({"temperature": "hot"}, TypeError, "temperature must be a number"),
    ({"top_p": 1.5}, ValueError, "top_p must be from 0.0 to 1.0"),
    ({"max_tokens": 0}, ValueError, "max_tokens must be a positive integer"),
    ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ({"stream_usage": "yes"}, TypeError, "stream_usage must be True or False"),
    ({"model_kwargs": {"stream": True}}, ValueError, "model_kwargs may not set stream"),
    ({"model_kwargs": {"messages": []}}, ValueError, "model_kwargs may not set messages"),
    ({"model_kwargs": {"stream_options": {}}}, ValueError, "stream_options"),
    ({"model_kwargs": ["x"]}, TypeError, "model_kwargs must be a mapping"),
]


def _ids(case: tuple[dict[str, Any], type[Exception], str]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in case[0].items())


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def server(quiet_server: ReplayServer) -> Iterator[ReplayServer]:
    """The module's server, checked to have received no request during the test."""
    before = len(quiet_server.requests)
    yield quiet_server
    assert len(quiet_server.requests) == before, "a request was sent"


@pytest.fixture(scope="module")
def shared_clients(
    quiet_server: ReplayServer,
) -> Iterator[tuple[openai.OpenAI, openai.AsyncOpenAI]]:
    """One pair of SDK clients for the module (nothing is ever sent through them)."""
    common: dict[str, Any] = {"base_url": quiet_server.base_url, "api_key": "k", "max_retries": 0}
    client = openai.OpenAI(**common)
    async_client = openai.AsyncOpenAI(**common)
    yield client, async_client
    client.close()
    asyncio.run(async_client.close())


@pytest.fixture
def make_model(shared_clients: tuple[openai.OpenAI, openai.AsyncOpenAI]) -> ModelFactory:
    """Models on the module's clients (overrides the conftest factory: no client per test)."""
    client, async_client = shared_clients

    def factory(server: ReplayServer, **kwargs: Any) -> ChatOpenAI:
        assert server.base_url == str(client.base_url).rstrip("/")
        return ChatOpenAI(
            model=kwargs.pop("model", "gpt-4o"), client=client, async_client=async_client, **kwargs
        )

    return factory


@pytest.mark.parametrize("case", BAD_OPTIONS, ids=_ids)
def test_constructor_rejects(
    server: ReplayServer, case: tuple[dict[str, Any], type[Exception], str]
) -> None:
    options, error, text = case
    kwargs: dict[str, Any] = {"model": "gpt-4o", **options}
    with pytest.raises(error, match=re.escape(text)):
        ChatOpenAI(base_url=server.base_url, api_key="k", **kwargs)


@pytest.mark.parametrize("method", sorted(SYNC_CALLS))
@pytest.mark.parametrize("case", BAD_OPTIONS, ids=_ids)
def test_per_call_options_rejected_sync(
    server: ReplayServer,
    make_model: ModelFactory,
    case: tuple[dict[str, Any], type[Exception], str],
    method: str,
) -> None:
    options, error, text = case
    model = make_model(server)  # logprobs off on the model
    with pytest.raises(error, match=re.escape(text)):
        SYNC_CALLS[method](model, "hi", options)


@pytest.mark.parametrize("method", sorted(ASYNC_CALLS))
@pytest.mark.parametrize("case", BAD_OPTIONS, ids=_ids)
async def test_per_call_options_rejected_async(
    server: ReplayServer,
    make_model: ModelFactory,
    case: tuple[dict[str, Any], type[Exception], str],
    method: str,
) -> None:
    options, error, text = case
    model = make_model(server)
    with pytest.raises(error, match=re.escape(text)):
        await ASYNC_CALLS[method](model, "hi", options)


def test_per_call_override_combines_with_the_model(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    # top_logprobs on a logprobs=True model is fine, but turning logprobs off per call is not
    model = make_model(server, logprobs=True, top_logprobs=3)
    with pytest.raises(ValueError, match="top_logprobs needs logprobs=True"):
        model.invoke("hi", logprobs=False)


BAD_INPUTS: list[tuple[Any, type[Exception], str]] = [
    ([{"role": "wizard", "content": "hi"}], ValueError, "message 0 has role 'wizard'"),
    ([{"role": "user", "content": "a"}, {"content": "b"}], ValueError, "message 1 has role None"),
    ([{"role": 3, "content": "hi"}], ValueError, "has role 3"),
    ([{"role": "user"}, 5], TypeError, "message 1 must be a message or a dict"),
    ([], ValueError, "input has no messages"),
    (42, TypeError, "input must be a string or a list of messages"),
    (None, TypeError, "input must be a string or a list of messages"),
    ([{"role": "tool", "content": "x"}], Exception, "tool_call_id"),
]


@pytest.mark.parametrize("method", sorted(SYNC_CALLS))
@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: repr(c[0])[:40])
def test_bad_input_rejected_sync(
    server: ReplayServer,
    make_model: ModelFactory,
    case: tuple[Any, type[Exception], str],
    method: str,
) -> None:
    prompt, error, text = case
    model = make_model(server, logprobs=True)
    with pytest.raises(error, match=re.escape(text)):
        SYNC_CALLS[method](model, prompt, {})


@pytest.mark.parametrize("method", sorted(ASYNC_CALLS))
@pytest.mark.parametrize("case", BAD_INPUTS[:3], ids=lambda c: repr(c[0])[:40])
async def test_bad_input_rejected_async(
    server: ReplayServer,
    make_model: ModelFactory,
    case: tuple[Any, type[Exception], str],
    method: str,
) -> None:
    prompt, error, text = case
    model = make_model(server, logprobs=True)
    with pytest.raises(error, match=re.escape(text)):
        await ASYNC_CALLS[method](model, prompt, {})


@pytest.mark.parametrize("method", ["invoke", "stream", "batch"])
def test_unknown_per_call_option(
    server: ReplayServer, make_model: ModelFactory, method: str
) -> None:
    model = make_model(server, logprobs=True)
    call: Any = getattr(model, method)
    prompt: Any = ["hi"] if method == "batch" else "hi"
    with pytest.raises(TypeError, match="unknown parameter.*frequency_penalty.*model_kwargs"):
        call(prompt, frequency_penalty=0.5)


async def test_unknown_per_call_option_async(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server, logprobs=True)
    with pytest.raises(TypeError, match="unknown parameter"):
        await model.ainvoke("hi", temprature=0.2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown parameter"):
        model.astream("hi", temprature=0.2)  # type: ignore[call-arg]


class _Handler(BaseCallbackHandler):
    pass


def test_bad_callbacks(server: ReplayServer, make_model: ModelFactory) -> None:
    with pytest.raises(TypeError, match="is not a callback handler"):
        ChatOpenAI(model="gpt-4o", base_url=server.base_url, api_key="k", callbacks=[object()])  # type: ignore[list-item]
    model = make_model(server)
    with pytest.raises(TypeError, match="is not a callback handler"):
        model.invoke("hi", callbacks=["nope"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="is not a callback handler"):
        model.with_callbacks([_Handler(), 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="callbacks must be a list"):
        model.invoke("hi", callbacks=42)  # type: ignore[arg-type]


def test_bad_max_concurrency(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server)
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        model.batch(["a"], max_concurrency=0)


async def test_bad_max_concurrency_async(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server)
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        await model.abatch(["a"], max_concurrency=0)


def test_one_bad_input_in_a_batch_sends_nothing(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    # Every input is checked before the first request: no paid-for answers thrown away.
    model = make_model(server, logprobs=True)
    with pytest.raises(ValueError, match="message 0 has role 'wizard'"):
        model.batch(["ok", [{"role": "wizard", "content": "x"}], "ok too"])


async def test_one_bad_input_in_an_abatch_sends_nothing(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server, logprobs=True)
    with pytest.raises(ValueError, match="message 0 has role 'wizard'"):
        await model.abatch(["ok", [{"role": "wizard", "content": "x"}], "ok too"])


# -- valid edge values pass and reach the server as given ------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"logprobs": True, "top_logprobs": 0},
        {"logprobs": True, "top_logprobs": 20},
        {"temperature": 0, "top_p": 1, "max_tokens": 1, "seed": 0},
        {"stop": "\n"},
        {"stop": ("a", "b")},
        {"n": 1},
        {"model_kwargs": {"frequency_penalty": 0.5, "my_server_flag": {"x": 1}}},
    ],
    ids=repr,
)
def test_valid_options_are_sent(
    options: dict[str, Any], quiet_server: ReplayServer, make_model: ModelFactory
) -> None:
    before = len(quiet_server.requests)
    message = make_model(quiet_server).invoke([HumanMessage(content="hi")], **options)
    assert isinstance(message, AIMessage)
    (body,) = quiet_server.requests[before:]
    for key, value in options.items():
        if key == "model_kwargs":
            for k, v in value.items():
                assert body[k] == v
        elif key == "stop" and isinstance(value, tuple):
            assert body["stop"] == list(value)
        else:
            assert body[key] == value
