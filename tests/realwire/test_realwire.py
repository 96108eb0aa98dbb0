"""The recorded-wire tier: real OpenAI answers through our model, value for value.

Each case of `cases/` (sources in SOURCES.md) is replayed byte for byte by a loopback
server; streams also cut into random HTTP chunks (several seeds) and into the recorder's
own chunks. For each, the bare `openai` SDK's parse of the same bytes is the reference:
content, refusal, tool calls, every token's logprob bit for bit, bytes, alternatives,
finish reason, usage, ids and model must be equal, through every entry point. The
request our model sends must equal the recorded one, except for the differences
`cases.our_call` documents (dict order aside: JSON objects are compared as dicts).

n > 1: our model refuses it before any request (a result is one message with its own
logprobs; answering with choice 0 alone would drop the others silently). What a server
that sends several choices anyway gets decoded into (choice 0) is checked too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import reduce
from typing import Any

import openai
import pytest

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    ChatOpenAI,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)

from . import reference
from .cases import (
    CASES,
    SEEDS,
    SPLITS,
    Case,
    Location,
    canonical_ours,
    expected_request,
    loopback,
    our_call,
)
from .loopback import Loopback, random_sizes, recorded_sizes, utf8_sizes

JSON_CASES = [c for c in CASES if not c.stream]
STREAM_CASES = [c for c in CASES if c.stream]


def _ids(case: Case) -> str:
    return case.name


def test_the_tier_has_the_21_recorded_cases() -> None:
    assert len(CASES) == 21
    assert len({c.name for c in CASES}) == 21
    assert sum(c.n > 1 for c in CASES) == 3


# -- servers, clients and the reference -----------------------------------------------------


def _server(case: Case, split: str | None = None) -> Loopback:
    return loopback(case, split)


_REFERENCE: dict[str, Any] = {}


def _sdk_reference(case: Case) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """(the answer, per-chunk deltas or None) as the bare SDK reads the bytes; cached."""
    if case.name not in _REFERENCE:
        with _server(case) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
            try:
                if case.stream:
                    chunks = list(client.chat.completions.create(**case.request))
                    answer = reference.from_chunks(chunks)
                    if len(case.body) < 100_000:
                        assert reference.from_stream_state(chunks) == answer
                    _REFERENCE[case.name] = (answer, reference.per_chunk(chunks))
                else:
                    completion = client.chat.completions.create(**case.request)
                    _REFERENCE[case.name] = (reference.from_completion(completion), None)
            finally:
                client.close()
            assert server.requests == [case.request]  # the SDK sends the recording itself
    result: tuple[dict[str, Any], list[dict[str, Any]] | None] = _REFERENCE[case.name]
    return result


@pytest.fixture
async def models() -> AsyncIterator[Callable[[Loopback, str], ChatOpenAI]]:
    """Models on a loopback server; async so the async clients close on the test's loop."""
    made: list[tuple[openai.OpenAI, openai.AsyncOpenAI]] = []

    def factory(server: Loopback, model: str) -> ChatOpenAI:
        args: dict[str, Any] = {"base_url": server.base_url, "api_key": "k", "max_retries": 0}
        client, async_client = openai.OpenAI(**args), openai.AsyncOpenAI(**args)
        made.append((client, async_client))
        return ChatOpenAI(model, client=client, async_client=async_client)

    yield factory
    for client, async_client in made:
        client.close()
        await async_client.close()


def _call(case: Case, *, drop_n: bool = False) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    call = our_call(case)
    options = dict(call.options)
    model = options.pop("model")
    if drop_n:
        options.pop("n", None)
    return call.messages, model, options


def _assert_request(case: Case, sent: object) -> None:
    assert sent == expected_request(case, our_call(case))


# -- non-streamed ---------------------------------------------------------------------------


async def _invoke(model: ChatOpenAI, messages: Any, options: dict[str, Any]) -> AIMessage:
    return model.invoke(messages, **options)


async def _ainvoke(model: ChatOpenAI, messages: Any, options: dict[str, Any]) -> AIMessage:
    return await model.ainvoke(messages, **options)


async def _batch(model: ChatOpenAI, messages: Any, options: dict[str, Any]) -> AIMessage:
    [message] = model.batch([messages], **options)
    return message


async def _abatch(model: ChatOpenAI, messages: Any, options: dict[str, Any]) -> AIMessage:
    [message] = await model.abatch([messages], **options)
    return message


INVOKES = {"invoke": _invoke, "ainvoke": _ainvoke, "batch": _batch, "abatch": _abatch}


@pytest.mark.parametrize("entry", sorted(INVOKES))
@pytest.mark.parametrize("case", [c for c in JSON_CASES if c.n == 1], ids=_ids)
async def test_json_case_matches_the_sdk(
    case: Case, entry: str, models: Callable[[Loopback, str], ChatOpenAI]
) -> None:
    expected, _ = _sdk_reference(case)
    messages, name, options = _call(case)
    with _server(case) as server:
        message = await INVOKES[entry](models(server, name), messages, options)
    assert type(message) is AIMessage
    assert canonical_ours(message) == expected
    [sent] = server.requests
    _assert_request(case, sent)


# -- streamed -------------------------------------------------------------------------------


def _per_chunk_ours(chunks: list[AIMessageChunk]) -> list[dict[str, Any]]:
    from .cases import canonical_logprobs

    out = []
    for chunk in chunks:
        usage = chunk.usage_metadata
        out.append(
            {
                "content": chunk.content,
                "refusal": chunk.refusal,
                "tool_calls": [
                    (t.index, t.id, t.name, t.arguments) for t in chunk.tool_call_chunks
                ],
                "logprobs": canonical_logprobs(chunk.response_metadata.logprobs),
                "finish_reason": chunk.response_metadata.finish_reason,
                "usage": None
                if usage is None
                else (usage.input_tokens, usage.output_tokens, usage.total_tokens),
            }
        )
    return out


async def _stream(
    model: ChatOpenAI, messages: Any, options: dict[str, Any]
) -> list[AIMessageChunk]:
    return list(model.stream(messages, **options))


async def _astream(
    model: ChatOpenAI, messages: Any, options: dict[str, Any]
) -> list[AIMessageChunk]:
    return [chunk async for chunk in model.astream(messages, **options)]


STREAMS = {"stream": _stream, "astream": _astream}


def _check_stream(case: Case, chunks: list[AIMessageChunk]) -> None:
    expected, deltas = _sdk_reference(case)
    assert _per_chunk_ours(chunks) == deltas
    aggregate = reduce(lambda a, b: a + b, chunks)
    assert canonical_ours(aggregate) == expected
    assert canonical_ours(aggregate.to_message()) == expected


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("entry", sorted(STREAMS))
@pytest.mark.parametrize("case", [c for c in STREAM_CASES if c.n == 1], ids=_ids)
async def test_stream_case_matches_the_sdk(
    case: Case, entry: str, split: str, models: Callable[[Loopback, str], ChatOpenAI]
) -> None:
    messages, name, options = _call(case)
    with _server(case, split) as server:
        chunks = await STREAMS[entry](models(server, name), messages, options)
    _check_stream(case, chunks)
    [sent] = server.requests
    _assert_request(case, sent)


# -- n > 1 ------------------------------------------------------------------------------------

N_CASES = [c for c in CASES if c.n > 1]


@pytest.mark.parametrize("case", N_CASES, ids=_ids)
async def test_n_above_one_is_refused_before_the_request(
    case: Case, models: Callable[[Loopback, str], ChatOpenAI]
) -> None:
    messages, name, options = _call(case)
    with _server(case) as server:
        model = models(server, name)
        call = model.stream if case.stream else model.invoke
        with pytest.raises(ValueError, match="n > 1 is not supported"):
            call(messages, **options)
    assert server.requests == []


@pytest.mark.parametrize("case", N_CASES, ids=_ids)
async def test_several_choices_sent_anyway_give_choice_0(
    case: Case, models: Callable[[Loopback, str], ChatOpenAI]
) -> None:
    expected, deltas = _sdk_reference(case)
    messages, name, options = _call(case, drop_n=True)
    with _server(case, "seed1") as server:
        model = models(server, name)
        if case.stream:
            _check_stream(case, await _stream(model, messages, options))
        else:
            assert canonical_ours(model.invoke(messages, **options)) == expected
    [sent] = server.requests
    _assert_request(case, sent)


# -- structured output (the SDK tests' `parse(response_format=Location)`) --------------------

STRUCTURED = [c for c in CASES if c.structured and c.n == 1]


def test_the_structured_cases() -> None:
    assert {c.name for c in STRUCTURED} == {
        "openai-python/max-tokens-invoke",
        "openai-python/refusal-invoke",
        "openai-python/refusal-logprobs-stream",
        "openai-python/refusal-stream",
    }


@pytest.mark.parametrize("case", STRUCTURED, ids=_ids)
async def test_structured_output_sends_the_sdks_schema_and_keeps_the_message(
    case: Case, models: Callable[[Loopback, str], ChatOpenAI]
) -> None:
    expected, _ = _sdk_reference(case)
    messages, name, options = _call(case)
    del options["response_format"]  # from the pydantic model, as the SDK's parse() made it
    with _server(case, "seed2") as server:
        structured = models(server, name).with_structured_output(Location)
        if case.stream:
            chunks = list(structured.stream(messages, **options))
            result = structured.parse(reduce(lambda a, b: a + b, chunks).to_message())
        else:
            result = structured.invoke(messages, **options)
    [sent] = server.requests
    _assert_request(case, sent)
    assert canonical_ours(result.message) == expected
    assert result.parsed is None
    if expected["refusal"] is not None:
        assert result.refusal == expected["refusal"]
        assert result.parsing_error is None
    else:  # cut by max_tokens=1: the SDK's parse() raises LengthFinishReasonError
        assert expected["finish_reason"] == "length"
        assert result.refusal is None
        assert isinstance(result.parsing_error, ValueError)
        assert "cut at its token limit" in str(result.parsing_error)


@pytest.mark.parametrize("case", [c for c in STRUCTURED if not c.stream], ids=_ids)
def test_sdk_parse_agrees_on_refusals(case: Case) -> None:
    # The SDK's own structured-output parse of the same bytes, for the record.
    messages: Any = case.request["messages"]
    with (
        _server(case) as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        kwargs = {k: v for k, v in case.request.items() if k not in ("messages", "response_format")}
        if case.request.get("max_tokens") == 1:
            with pytest.raises(openai.LengthFinishReasonError):
                client.chat.completions.parse(messages=messages, response_format=Location, **kwargs)
            return
        completion = client.chat.completions.parse(
            messages=messages, response_format=Location, **kwargs
        )
    assert completion.choices[0].message.parsed is None
    assert completion.choices[0].message.refusal == _sdk_reference(case)[0]["refusal"]


# -- the tier really cuts the bytes anywhere ----------------------------------------------------


def test_the_splits_cut_the_bytes_anywhere() -> None:
    case = next(c for c in CASES if c.name == "openai-dotnet/lp-stream-2026")
    body = case.body
    for seed in SEEDS:
        sizes = random_sizes(len(body), seed)
        assert sum(sizes) == len(body)
        cuts = {sum(sizes[: i + 1]) for i in range(len(sizes) - 1)}
        inside_events = [p for p in cuts if body[p - 2 : p] != b"\n\n"]
        assert len(inside_events) > 200
    sizes = utf8_sizes(body)
    assert sum(sizes) == len(body)
    cuts = {sum(sizes[: i + 1]) for i in range(len(sizes) - 1)}
    inside_characters = [p for p in cuts if 0x80 <= body[p] <= 0xBF]
    assert len(inside_characters) == sum(0x80 <= b <= 0xBF for b in body) > 50
    assert len(recorded_sizes(len(body), case.meta["chunk_sizes"])) > 500


# -- typed messages send the recorded histories ---------------------------------------------


def _recorded(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


async def test_typed_tool_history_is_the_recorded_request(
    models: Callable[[Loopback, str], ChatOpenAI],
) -> None:
    case = _recorded("openai-dotnet/tool-followup-invoke")
    call = case.request["messages"][1]["tool_calls"]
    history = [
        HumanMessage(content=case.request["messages"][0]["content"]),
        AIMessage(
            tool_calls=[
                ToolCall(
                    id=c["id"],
                    name=c["function"]["name"],
                    args={"city_name": city},
                    arguments=c["function"]["arguments"],
                )
                for c, city in zip(call, ("Santiago", "Karachi"), strict=True)
            ]
        ),
        ToolMessage(content="rainy", tool_call_id=call[0]["id"]),
        ToolMessage(content="sunny", tool_call_id=call[1]["id"]),
    ]
    with _server(case) as server:
        model = models(server, "gpt-4o-mini").bind_tools(case.request["tools"])
        answer = model.invoke(history)
    assert server.requests == [case.request]
    assert answer.content == _sdk_reference(case)[0]["content"]


async def test_typed_refusal_history_is_the_recorded_request(
    models: Callable[[Loopback, str], ChatOpenAI],
) -> None:
    case = _recorded("openai-dotnet/refusal-in-history-invoke-2026")
    first, refused, second = case.request["messages"]
    history = [
        HumanMessage(content=first["content"]),
        AIMessage(refusal=refused["refusal"]),
        HumanMessage(content=second["content"]),
    ]
    with _server(case) as server:
        models(server, case.request["model"]).invoke(history)
    assert server.requests == [case.request]


async def test_typed_named_system_parts_are_the_recorded_request(
    models: Callable[[Loopback, str], ChatOpenAI],
) -> None:
    case = _recorded("openai-go/lp-tool-stream")
    [system] = case.request["messages"]
    message = SystemMessage(name=system["name"], content=system["content"])
    with _server(case) as server:
        model = models(server, "gpt-4o").bind_tools(case.request["tools"])
        chunks = list(model.stream([message], logprobs=True, model_kwargs={"user": "user-1234"}))
    assert server.requests == [case.request]
    _check_stream(case, chunks)


async def test_an_answers_tool_calls_go_back_as_they_came(
    models: Callable[[Loopback, str], ChatOpenAI],
) -> None:
    # The tool-calling answer, sent back in the next request's history, carries the calls
    # exactly as the model wrote them (ids, names, argument text).
    case = _recorded("otel-python-contrib/tool-invoke")
    with _server(case) as server:
        model = models(server, "gpt-4o-mini").bind_tools(case.request["tools"], tool_choice="auto")
        answer = model.invoke(case.request["messages"])
        results = [ToolMessage(content="sunny", tool_call_id=c.id or "") for c in answer.tool_calls]
        model.invoke([*case.request["messages"], answer, *results])
    assert len(answer.tool_calls) == 2
    assert [c.args for c in answer.tool_calls] == [
        {"location": "Seattle, WA"},
        {"location": "San Francisco, CA"},
    ]
    first, second = server.requests
    assert first == case.request
    assert isinstance(second, dict)
    sent = second["messages"][2]
    assert sent == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_JpNb8OiAkbIbHzDggfpdDHpi",
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "arguments": '{"location": "Seattle, WA"}',
                },
            },
            {
                "id": "call_vaFQc3zK6hHTRZKXRI5Eo2cJ",
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "arguments": '{"location": "San Francisco, CA"}',
                },
            },
        ],
    }
    assert [m["tool_call_id"] for m in second["messages"][3:]] == [
        "call_JpNb8OiAkbIbHzDggfpdDHpi",
        "call_vaFQc3zK6hHTRZKXRI5Eo2cJ",
    ]
