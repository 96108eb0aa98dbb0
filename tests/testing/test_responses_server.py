"""The replay server's `POST /v1/responses`: the same completions as the Responses API shapes them.

Every test talks real HTTP to 127.0.0.1 through the official openai SDK (its typed
`Response` and stream events) or httpx2, and compares with the chat endpoint's answer to
the same completion where the two APIs carry the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.responses import Response, ResponseIncludable

from logprobscope.testing import (
    SEED_INVOKE,
    SEED_STREAM,
    SEED_STRUCTURED,
    SEED_TOOL_ANSWER,
    SEED_TOOL_CALL,
    SEED_TOP_LOGPROBS,
    Completion,
    Deviations,
    Faults,
    ReplayServer,
    make_completion,
)

LOGPROBS: list[ResponseIncludable] = ["message.output_text.logprobs"]
MODEL = "gpt-4o"
EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 19,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


def sdk_for(server: ReplayServer, *, timeout: float = 10.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=timeout)


def entries(completion: Completion) -> list[dict[str, Any]]:
    choices: Any = completion["choices"]
    return list(choices[0]["logprobs"]["content"])


def text_of(completion: Completion) -> str:
    choices: Any = completion["choices"]
    return str(choices[0]["message"]["content"])


def raw_events(server: ReplayServer, **body: object) -> list[tuple[str, dict[str, Any]]]:
    """POST a streamed Responses request; return (event line, parsed data) per event."""
    with httpx2.Client(timeout=10.0) as http:
        reply = http.post(
            f"{server.base_url}/responses",
            json={"model": MODEL, "input": "hi", "stream": True, **body},
        )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in reply.text.split("\n\n"):
        if not block.strip():
            continue
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        out.append((event_line[len("event: ") :], json.loads(data_line[len("data: ") :])))
    return out


def part_of(response: Response) -> Any:
    """The first content part of the first output item."""
    item: Any = response.output[0]
    return item.content[0]


def text_deltas(events: list[Any]) -> list[Any]:
    return [e for e in events if e.type == "response.output_text.delta"]


# -- non-streamed ------------------------------------------------------------------------------


def test_a_response_carries_the_completions_tokens(server: ReplayServer) -> None:
    with sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS)
    assert isinstance(response, Response)
    assert response.id == "resp_seed-invoke"
    assert response.model == "gpt-4o-2024-08-06"
    assert response.status == "completed" and response.incomplete_details is None
    assert response.output_text == text_of(SEED_INVOKE)
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    [part] = message.content
    assert part.type == "output_text" and part.logprobs is not None
    got = [(e.token, e.logprob, e.bytes, e.top_logprobs) for e in part.logprobs]
    assert got == [(e["token"], e["logprob"], e["bytes"], []) for e in entries(SEED_INVOKE)]
    usage: Any = SEED_INVOKE["usage"]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert response.usage.total_tokens == usage["total_tokens"]
    assert server.request_paths == ["/v1/responses"]


def test_without_include_the_parts_carry_empty_logprobs(server: ReplayServer) -> None:
    with sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="hi", top_logprobs=3)
        events = list(sdk.responses.create(model=MODEL, input="hi", stream=True))
    part = part_of(response)
    assert part.logprobs == []
    assert response.top_logprobs == 0
    deltas = text_deltas(events)
    assert deltas and all(e.logprobs == [] for e in deltas)


@pytest.mark.parametrize(("asked", "expected"), [(None, 0), (0, 0), (2, 2), (3, 3), (20, 3)])
def test_top_logprobs_are_truncated(asked: int | None, expected: int) -> None:
    top: dict[str, Any] = {} if asked is None else {"top_logprobs": asked}
    with ReplayServer([SEED_TOP_LOGPROBS]) as server, sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS, **top)
        events = list(
            sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS, stream=True, **top)
        )
    part = part_of(response)
    assert [len(e.top_logprobs) for e in part.logprobs] == [expected] * len(part.logprobs)
    assert [t.token for t in part.logprobs[0].top_logprobs] == ["Thank", "Hello", "I'm"][:expected]
    first = [(t.token, t.bytes, t.logprob) for t in part.logprobs[0].top_logprobs[:1]]
    assert first == [("Thank", [84, 104, 97, 110, 107], -0.28644064)][:expected]
    streamed = [e for d in text_deltas(events) for e in d.logprobs]
    assert [len(e.top_logprobs or []) for e in streamed] == [expected] * len(streamed)


def test_tool_calls_are_function_call_items(server: ReplayServer) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {}}]
    with sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="weather?", tools=tools)
        answer = sdk.responses.create(
            model=MODEL,
            tools=tools,
            input=[
                {"role": "user", "content": "weather?"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
        )
    [call] = response.output
    assert call.type == "function_call"
    calls: Any = SEED_TOOL_CALL["choices"]
    wire = calls[0]["message"]["tool_calls"][0]
    assert (call.call_id, call.name, call.arguments) == (
        wire["id"],
        wire["function"]["name"],
        wire["function"]["arguments"],
    )
    assert call.id == "fc_seed-tool-call_0" and call.status == "completed"
    assert answer.id == "resp_seed-tool-answer"
    assert answer.output_text == text_of(SEED_TOOL_ANSWER)


def test_a_json_schema_format_gets_the_structured_seed(server: ReplayServer) -> None:
    with sdk_for(server) as sdk:
        response = sdk.responses.create(
            model=MODEL,
            input="hi",
            text={"format": {"type": "json_schema", "name": "X", "schema": {}}},
        )
    assert response.id == "resp_seed-structured"
    assert response.output_text == text_of(SEED_STRUCTURED)


def test_a_cut_answer_is_incomplete() -> None:
    completion = make_completion([("Hi", -0.5), (" there", -0.25)], finish_reason="length")
    with ReplayServer([completion]) as server, sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS)
        events = list(sdk.responses.create(model=MODEL, input="hi", stream=True))
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    item: Any = response.output[0]
    assert item.status == "incomplete"
    last: Any = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"


def test_a_refusal_is_a_refusal_part() -> None:
    completion = make_completion([("I", -0.1), (" can't", -0.2)], refusal=True)
    with ReplayServer([completion]) as server, sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS)
        events = list(sdk.responses.create(model=MODEL, input="hi", stream=True, include=LOGPROBS))
    part = part_of(response)
    assert part.type == "refusal" and part.refusal == "I can't"
    deltas = [e.delta for e in events if e.type == "response.refusal.delta"]
    assert deltas == ["I", " can't"]
    assert [e.type for e in events if e.type.startswith("response.refusal")][-1] == (
        "response.refusal.done"
    )


# -- streamed ----------------------------------------------------------------------------------


def test_the_stream_is_openais_event_sequence(server: ReplayServer) -> None:
    events = raw_events(server, include=LOGPROBS)
    assert [name for name, _ in events] == EVENTS
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(EVENTS)))
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["usage"] is None
    delta = events[4][1]
    assert delta["item_id"] == "msg_seed-stream"
    assert (delta["output_index"], delta["content_index"]) == (0, 0)
    assert delta["delta"] == "Thank"
    assert delta["logprobs"] == [{"token": "Thank", "logprob": -0.23375113, "top_logprobs": []}]
    done = events[-4][1]
    assert done["text"] == text_of(SEED_STREAM)
    assert done["logprobs"] == [d["logprobs"][0] for _, d in events[4:-4]]
    part_done = events[-3][1]["part"]
    assert part_done["logprobs"] == [  # with bytes, as in a non-streamed answer
        {"token": e["token"], "bytes": e["bytes"], "logprob": e["logprob"], "top_logprobs": []}
        for e in entries(SEED_STREAM)
    ]
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    usage: Any = SEED_STREAM["usage"]
    assert completed["usage"]["output_tokens"] == usage["completion_tokens"]
    assert completed["output"][0]["content"][0]["text"] == text_of(SEED_STREAM)


def test_the_sdk_reads_the_stream_and_its_helper(server: ReplayServer) -> None:
    with sdk_for(server) as sdk:
        events = list(sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS, stream=True))
        with sdk.responses.stream(model=MODEL, input="hi", include=LOGPROBS) as stream:
            helper_events = list(stream)
            final = stream.get_final_response()
    assert [e.type for e in events] == EVENTS
    deltas = text_deltas(events)
    tokens = [(e.token, e.logprob) for d in deltas for e in d.logprobs]
    assert tokens == [(e["token"], e["logprob"]) for e in entries(SEED_STREAM)]
    assert "".join(d.delta for d in deltas) == text_of(SEED_STREAM)
    assert [e.type for e in helper_events] == EVENTS
    assert final.output_text == text_of(SEED_STREAM)


@pytest.mark.parametrize("chunk_tokens", [1, 4, 100])
def test_streamed_and_not_give_the_chat_endpoints_tokens(chunk_tokens: int) -> None:
    with ReplayServer([SEED_INVOKE], chunk_tokens=chunk_tokens) as server, sdk_for(server) as sdk:
        chat = sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
        response = sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS)
        events = list(sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS, stream=True))
    assert chat.choices[0].logprobs is not None
    want = [(e.token, e.logprob, e.bytes) for e in chat.choices[0].logprobs.content or []]
    part = part_of(response)
    assert [(e.token, e.logprob, e.bytes) for e in part.logprobs] == want
    deltas = text_deltas(events)
    assert len(deltas) == -(-37 // chunk_tokens)
    assert [(e.token, e.logprob) for d in deltas for e in d.logprobs] == [
        (t, lp) for t, lp, _ in want
    ]
    assert "".join(d.delta for d in deltas) == chat.choices[0].message.content


def test_a_streamed_tool_call_sends_its_arguments_in_pieces(server: ReplayServer) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {}}]
    events = raw_events(server, tools=tools)
    names = [name for name, _ in events]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    pieces = [d["delta"] for n, d in events if n == "response.function_call_arguments.delta"]
    assert len(pieces) > 1
    assert "".join(pieces) == events[-3][1]["arguments"] == '{"city":"New York City"}'
    assert events[2][1]["item"]["arguments"] == ""


def test_both_endpoints_share_a_server_without_mixing_their_answers() -> None:
    with ReplayServer([SEED_STREAM]) as server, sdk_for(server) as sdk:
        for _ in range(2):
            chunks = list(
                sdk.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
                )
            )
            events = list(sdk.responses.create(model=MODEL, input="hi", stream=True))
            assert chunks[0].object == "chat.completion.chunk"
            assert events[0].type == "response.created"
    assert server.request_paths == ["/v1/chat/completions", "/v1/responses"] * 2


# -- deviations and faults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "deviations",
    [Deviations(empty_responses_logprobs=True), Deviations(no_logprobs=True)],
    ids=["empty_responses_logprobs", "no_logprobs"],
)
def test_deviations_that_send_no_logprobs(deviations: Deviations) -> None:
    with ReplayServer(deviations=deviations) as server, sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS, top_logprobs=2)
        events = list(sdk.responses.create(model=MODEL, input="hi", include=LOGPROBS, stream=True))
        chat = sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
    part = part_of(response)
    assert part.logprobs == [] and part.text
    deltas = text_deltas(events)
    assert len(deltas) == 19
    # llama-server leaves the key out of its deltas; the SDK then has no value there
    assert all(getattr(d, "logprobs", None) in ([], None) for d in deltas)
    assert [e.logprobs for e in events if e.type == "response.output_text.done"] == [[]]
    # the deviation is the Responses endpoint's own; no_logprobs is both endpoints'
    assert (chat.choices[0].logprobs is None) is deviations.no_logprobs


def test_llama_servers_deltas_have_no_logprobs_key() -> None:
    with ReplayServer(deviations=Deviations(empty_responses_logprobs=True)) as server:
        events = raw_events(server, include=LOGPROBS, top_logprobs=2)
    deltas = [data for name, data in events if name == "response.output_text.delta"]
    assert len(deltas) == 25 and all("logprobs" not in d for d in deltas)  # the top seed
    done = [data for name, data in events if name == "response.content_part.done"]
    assert done[0]["part"]["logprobs"] == []
    assert events[-1][1]["response"]["output"][0]["content"][0]["logprobs"] == []


def test_bytes_null_applies_to_the_response_json() -> None:
    with ReplayServer(deviations=Deviations(bytes_null=True)) as server:
        with httpx2.Client(timeout=10.0) as http:
            body = http.post(
                f"{server.base_url}/responses",
                json={"model": MODEL, "input": "hi", "include": LOGPROBS, "top_logprobs": 1},
            ).json()
    logprobs = body["output"][0]["content"][0]["logprobs"]
    assert logprobs and all(e["bytes"] is None for e in logprobs)
    assert all(t["bytes"] is None for e in logprobs for t in e["top_logprobs"])


def test_an_http_error_status(server: ReplayServer) -> None:
    server.set_faults(Faults(status=429))
    with sdk_for(server) as sdk, pytest.raises(openai.RateLimitError):
        sdk.responses.create(model=MODEL, input="hi")


@pytest.mark.parametrize("stream", [False, True])
def test_a_cut_connection(server: ReplayServer, stream: bool) -> None:
    server.set_faults(Faults(cut_after=6))
    seen: list[object] = []
    with sdk_for(server) as sdk, pytest.raises(openai.APIConnectionError):
        if stream:
            seen.extend(sdk.responses.create(model=MODEL, input="hi", stream=True))
        else:
            sdk.responses.create(model=MODEL, input="hi")
    assert len(seen) == (6 if stream else 0)


def test_malformed_and_invalid_utf8_events(server: ReplayServer) -> None:
    with sdk_for(server) as sdk:
        server.set_faults(Faults(malformed_at=5))
        seen: list[object] = []
        with pytest.raises(json.JSONDecodeError):
            seen.extend(sdk.responses.create(model=MODEL, input="hi", stream=True))
        assert len(seen) == 5
        server.set_faults(Faults(invalid_utf8_at=5))
        with pytest.raises(UnicodeDecodeError):
            list(sdk.responses.create(model=MODEL, input="hi", stream=True))


def test_the_error_event(server: ReplayServer) -> None:
    server.set_faults(Faults(error_event_at=6))
    events = raw_events(server)
    assert [name for name, _ in events][-2:] == ["response.output_text.delta", "error"]
    assert len(events) == 7
    error = events[-1][1]
    assert error["type"] == "error" and error["code"] == "server_error"
    assert error["sequence_number"] == 6 and "replay fault" in error["message"]
    with sdk_for(server) as sdk:
        sdk_events = list(sdk.responses.create(model=MODEL, input="hi", stream=True))
    assert sdk_events[-1].type == "error"  # the SDK yields it; it does not raise


def test_a_stall_past_the_timeout(server: ReplayServer) -> None:
    server.set_faults(Faults(stall_after=5, stall_seconds=20))
    seen: list[object] = []
    with sdk_for(server, timeout=0.5) as sdk, pytest.raises(openai.APITimeoutError):
        seen.extend(sdk.responses.create(model=MODEL, input="hi", stream=True))
    assert len(seen) == 5


def test_only_post(server: ReplayServer) -> None:
    with httpx2.Client(timeout=10.0) as http:
        reply = http.get(f"{server.base_url}/responses")
    assert reply.status_code == 405
    assert server.requests == []


def test_a_chooser_gets_the_responses_body() -> None:
    seen: list[dict[str, object]] = []

    def choose(body: Any) -> Completion:
        seen.append(dict(body))
        return make_completion(["ok"])

    with ReplayServer(choose) as server, sdk_for(server) as sdk:
        response = sdk.responses.create(model=MODEL, input="hi", instructions="be brief")
    assert response.output_text == "ok"
    assert seen == [{"model": MODEL, "input": "hi", "instructions": "be brief"}]
