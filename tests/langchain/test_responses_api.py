"""LangChain's `ChatOpenAI(use_responses_api=True)` does not keep logprobs: what README says.

This pins langchain-openai's behaviour, which logprobscope does not patch: asking with
`logprobs=True` fails in the SDK, and with `include=["message.output_text.logprobs"]` the
answer keeps each part's text and annotations only, so the handler's span has no tokens.
The raw client's instrumentation, over the same server, does record them. If a test here
fails, LangChain changed: update the README's "Already on LangChain" section.
"""

from __future__ import annotations

import openai
import pytest

from logprobscope.instrument import instrument_openai
from logprobscope.langchain import LogprobsCallbackHandler
from logprobscope.testing import ReplayServer
from tests.support.factories import LangChainFactory
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]

INCLUDE = ["message.output_text.logprobs"]


def test_logprobs_true_is_a_type_error(
    server: ReplayServer, make_lc_model: LangChainFactory
) -> None:
    model = make_lc_model(server, use_responses_api=True, logprobs=True)
    with pytest.raises(TypeError, match="logprobs"):
        model.invoke("hi")
    assert server.requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_the_answer_and_the_span_have_no_tokens(
    server: ReplayServer, make_lc_model: LangChainFactory, otel: InMemoryOtel, stream: bool
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, use_responses_api=True, include=INCLUDE, callbacks=[handler])
    if stream:
        chunks = list(model.stream("hi"))
        blocks = [b for c in chunks if isinstance(c.content, list) for b in c.content]
        metadata = [c.response_metadata for c in chunks]
    else:
        message = model.invoke("hi")
        assert isinstance(message.content, list)
        blocks, metadata = list(message.content), [message.response_metadata]
    assert server.requests[-1]["include"] == INCLUDE  # asked for, and sent by the server
    assert blocks and all("logprobs" not in str(block) for block in blocks)
    assert all("logprobs" not in m for m in metadata)
    attrs = otel.span().attributes or {}
    assert attrs["logprobs.token_count"] == 0
    assert attrs["logprobs.enabled"] is False
    assert not otel.span().events


def test_the_raw_client_records_them(server: ReplayServer, otel: InMemoryOtel) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        instrument_openai(client, telemetry=otel.telemetry)
        client.responses.create(
            model="gpt-4o", input="hi", include=["message.output_text.logprobs"]
        )
    assert (otel.span().attributes or {})["logprobs.token_count"] == 37
