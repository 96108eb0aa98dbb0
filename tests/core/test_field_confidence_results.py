"""Field confidence on the typed results: `AIMessage.field_confidence` and
`StructuredOutput.field_confidence` (the schema the answer was asked in marks the enums)."""

from __future__ import annotations

from functools import reduce
from typing import Literal

import pytest
from pydantic import BaseModel

from logprobscope import AIMessage, field_confidence
from logprobscope.testing import ReplayServer, make_completion
from tests.support.factories import ModelFactory, ServerFactory


class Location(BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


def test_structured_output_gives_each_fields_confidence(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    structured = make_model(server, logprobs=True, top_logprobs=3).with_structured_output(Location)
    result = structured.invoke("What's the weather like in SF?")
    report = result.field_confidence()
    assert [(f.path, f.value) for f in report.fields] == [
        ("$.city", "San Francisco"),
        ("$.temperature", 65),
        ("$.units", "f"),
    ]
    assert report.complete
    # The enum field has the alternatives at its first value token; the others not.
    assert report["$.units"].alternatives is not None
    assert report["$.city"].alternatives is None
    tokens = result.message.response_metadata.logprobs.content  # type: ignore[union-attr]
    assert report == field_confidence(tokens or [], schema=Location)
    # Without the schema, the message alone: the same fields, no enum known.
    plain = result.message.field_confidence()
    assert [f.logprob for f in plain.fields] == [f.logprob for f in report.fields]
    assert plain["$.units"].alternatives is None
    assert result.message.field_confidence(schema=Location) == report


def test_a_streamed_answer_gives_the_same_fields(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    structured = make_model(server, logprobs=True, top_logprobs=3).with_structured_output(Location)
    invoked = structured.invoke("x").field_confidence()
    chunks = list(structured.stream("x"))
    streamed = structured.parse(reduce(lambda a, b: a + b, chunks).to_message())
    assert streamed.field_confidence() == invoked


def test_a_refusal_has_no_fields_and_no_logprobs_is_an_error(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    refusal = make_completion(["I'm", " sorry"], refusal=True)
    server = make_server([refusal])
    refused = make_model(server, logprobs=True).with_structured_output(Location).invoke("x")
    assert refused.refusal == "I'm sorry"
    report = refused.field_confidence()
    assert report.fields == () and not report.complete
    with pytest.raises(ValueError, match="logprobs=True"):
        AIMessage(content='{"a": 1}').field_confidence()
