"""What Jaeger shows of our spans, pinned without running Jaeger.

Our exported spans (OTLP JSON) are converted the way Jaeger's query service converts them
(`tests.support.jaeger`: keys sorted, events as logs led by ``event=<name>``, arrays as JSON
text), and the UI's ordering of a span's attributes is applied with the configuration that
examples/jaeger ships. The assertions are about what a person sees first: the first fields
of a collapsed token log and of a collapsed batch, the summary above the messages, and
ticks (log timestamps) at the tokens' arrival.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from logprobscope import _contract as n
from logprobscope.otel import LogprobTelemetry, ResponseFacts
from logprobscope.report import spans_to_otlp_json
from tests.support.jaeger import (
    JaegerLog,
    JaegerSpan,
    jaeger_spans,
    order_tags,
    summary,
    ui_config,
)
from tests.support.otel import InMemoryOtel

UI_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "jaeger" / "jaeger-ui.json"
T0 = 1_800_000_000_000_000_000  # ns; token i arrives at T0 + i ms
MS = 1_000_000
WORDS = (" the", " model", " streams", " tokens", "é", " 東京", " 🙂", ",", " and", "\n")
# What a collapsed line shows before it is cut, after its label ("logprobs.token (1.2ms):")
# in Jaeger at 1,600 px: about 100 characters of "key=value" fields.
VISIBLE = 100


def entries(count: int, *, seed: int = 1, low_every: int = 0) -> list[dict[str, object]]:
    """OpenAI-format tokens with 3 alternatives; every `low_every`-th is unlikely."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(count):
        text = WORDS[rng.randrange(len(WORDS))]
        logprob = -rng.uniform(0.0, 0.4)
        if low_every and i % low_every == low_every - 1:
            logprob = -rng.uniform(1.0, 6.0)
        alternatives = [(text, logprob), (" a", logprob - 1.5), (" an", logprob - 3.0)]
        out.append(
            {
                "token": text,
                "logprob": logprob,
                "bytes": list(text.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives
                ],
            }
        )
    return out


def record(
    otel: InMemoryOtel,
    tokens: list[dict[str, object]],
    *,
    capture: bool = True,
    events: str = "tokens",
    error: BaseException | None = None,
) -> JaegerSpan:
    """One streamed call, token i arriving at T0 + i ms, as Jaeger shows it."""
    telemetry = LogprobTelemetry(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        capture_content=capture,
        events=events,  # type: ignore[arg-type]
    )
    call = telemetry.start_call(
        model="gpt-4o",
        stream=True,
        params={"logprobs": True, "top_logprobs": 3},
        input_messages=[{"role": "user", "content": "Tell me about tokens. " * 20}],
        start_time_ns=T0 - 50 * MS,
    )
    for i, entry in enumerate(tokens):
        call.add_tokens([entry], time_ns=T0 + i * MS)
    text = "".join(str(e["token"]) for e in tokens)
    call.set_response(ResponseFacts(id="r", model="gpt-4o", output_text=text))
    if error is None:
        call.end(completed=True)
    else:
        call.fail(error)
    document = json.loads(spans_to_otlp_json(otel.spans()))
    [span] = jaeger_spans(document)
    return span


def logs(span: JaegerSpan, name: str) -> list[JaegerLog]:
    return [log for log in span.logs if log.name == name]


def keys_until(log: JaegerLog, key: str) -> list[str]:
    keys = log.keys()
    return keys[: keys.index(key) + 1]


# -- a token log, collapsed ---------------------------------------------------------------------


def test_a_collapsed_token_log_shows_index_probability_and_text_first(
    otel: InMemoryOtel,
) -> None:
    span = record(otel, entries(40))
    tokens = logs(span, n.EVENT_TOKEN)
    assert len(tokens) == 40
    for log in tokens:
        # The line a person reads comes right after the index: probability and text.
        assert log.keys()[:3] == ["event", n.TOKEN_INDEX, n.TOKEN_LINE]
        text = log.get(n.TOKEN_TEXT).text
        probability = math.exp(float(log.get(n.TOKEN_LOGPROB).text))
        assert log.get(n.TOKEN_LINE).text == f"p={probability:.4f} {text!r}"
        line = summary(log.fields)
        shown = f"{n.TOKEN_LINE}={log.get(n.TOKEN_LINE).text}"
        assert line.index(shown) + len(shown) <= VISIBLE, line[:200]
        # The numbers for programs follow: exact logprob, rounded probability; nothing
        # long comes before the text (the bytes are the text's own UTF-8 here).
        assert keys_until(log, n.TOKEN_TEXT)[3:] == [
            n.TOKEN_LOGPROB,
            n.TOKEN_PROBABILITY,
            n.TOKEN_TEXT,
        ]
        assert float(log.get(n.TOKEN_PROBABILITY).text) == round(probability, 4)


def test_without_capture_the_probability_comes_before_the_alternatives(
    otel: InMemoryOtel,
) -> None:
    span = record(otel, entries(10), capture=False)
    for log in logs(span, n.EVENT_TOKEN):
        assert log.keys() == [
            "event",
            n.TOKEN_INDEX,
            n.TOKEN_LINE,
            n.TOKEN_LOGPROB,
            n.TOKEN_PROBABILITY,
            n.TOKEN_TOP_LOGPROBS,
        ]
        assert log.get(n.TOKEN_LINE).text.startswith("p=0.")


def test_bytes_appear_only_where_the_text_cannot_say_it(otel: InMemoryOtel) -> None:
    tokens = entries(3)
    tokens[1] = {**tokens[1], "token": "\ufffd", "bytes": [240, 159]}  # half an emoji
    span = record(otel, tokens)
    first, second, third = logs(span, n.EVENT_TOKEN)
    assert n.TOKEN_BYTES not in first.keys() and n.TOKEN_BYTES not in third.keys()
    assert second.get(n.TOKEN_BYTES).text == "[240,159]"  # JSON text, as Jaeger stores arrays


# -- batches, collapsed --------------------------------------------------------------------------


def test_a_collapsed_batch_says_which_tokens_it_holds(otel: InMemoryOtel) -> None:
    span = record(otel, entries(2000, low_every=97))
    batches = logs(span, n.EVENT_TOKENS)
    assert len(batches) == 12
    covered: list[int] = []
    for log in batches:
        heading = ["event", n.TOKENS_FIRST_INDEX, n.TOKENS_LAST_INDEX, n.TOKENS_LINES]
        assert log.keys()[:4] == heading
        first = int(log.get(n.TOKENS_FIRST_INDEX).text)
        last = int(log.get(n.TOKENS_LAST_INDEX).text)
        covered.extend(range(first, last + 1))
        line = summary(log.fields)
        # "event=logprobs.tokens logprobs.tokens.first_index=107 logprobs.tokens.last_index=
        # 264", in view collapsed; the lines follow ("107 p=0.9591 ',' | top: ...").
        said = f"{n.TOKENS_LAST_INDEX}={last}"
        assert line.index(said) + len(said) <= VISIBLE, line[:200]
        assert f'{n.TOKENS_LINES}=["{first} p=' in line
        lines = json.loads(log.get(n.TOKENS_LINES).text)
        assert len(lines) == last - first + 1
        assert [int(row.split(" ", 1)[0]) for row in lines] == list(range(first, last + 1))
    assert covered == list(range(107, 2000))


def test_a_batch_line_tells_text_probability_and_alternatives(otel: InMemoryOtel) -> None:
    tokens = entries(400)
    span = record(otel, tokens)
    [batch, *_] = logs(span, n.EVENT_TOKENS)
    first = int(batch.get(n.TOKENS_FIRST_INDEX).text)
    lines = json.loads(batch.get(n.TOKENS_LINES).text)
    for j, line in enumerate(lines):
        entry = tokens[first + j]
        p = math.exp(float(entry["logprob"]))  # type: ignore[arg-type]
        alternatives = entry["top_logprobs"]
        assert isinstance(alternatives, list)
        shown = ", ".join(f"{a['token']!r} {math.exp(a['logprob']):.4f}" for a in alternatives)
        assert line == f"{first + j} p={p:.4f} {entry['token']!r} | top: {shown}"


# -- the least likely token, one click away -------------------------------------------------------


def test_the_least_likely_token_of_a_long_answer_is_a_log_of_its_own(
    otel: InMemoryOtel,
) -> None:
    tokens = entries(2000, low_every=97)
    tokens[1500] = {**tokens[1500], "logprob": -9.5}  # the minimum, deep in a batch
    span = record(otel, tokens)
    min_index = int(span.tag(n.LOGPROBS_MIN_INDEX).text)
    assert min_index == 1500
    [log] = [log for log in logs(span, n.EVENT_TOKEN) if log.get(n.TOKEN_INDEX).value == 1500]
    assert log.get(n.TOKEN_PROBABILITY).text == "0.0000749"  # three significant digits
    assert log.timestamp_us == (T0 + 1500 * MS) // 1000  # at its own arrival
    # The other logs of their own past the token events are low-confidence tokens.
    lows = [log.get(n.TOKEN_INDEX).value for log in logs(span, n.EVENT_TOKEN)][107:]
    assert len(lows) == 8
    assert all(math.exp(float(tokens[int(i)]["logprob"])) < 0.5 for i in lows)  # type: ignore[arg-type]


# -- the timeline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [200, 2000, 20_000])
def test_ticks_are_token_arrivals_and_batches_are_even(otel: InMemoryOtel, count: int) -> None:
    span = record(otel.new(), entries(count))
    for log in logs(span, n.EVENT_TOKEN):
        index = int(log.get(n.TOKEN_INDEX).text)
        assert log.timestamp_us == (T0 + index * MS) // 1000
    batches = logs(span, n.EVENT_TOKENS)
    firsts = [int(log.get(n.TOKENS_FIRST_INDEX).text) for log in batches]
    # Each batch's tick is its first token's arrival ...
    assert [log.timestamp_us for log in batches] == [(T0 + i * MS) // 1000 for i in firsts]
    # ... and the batches are even: for a stream at an even pace, the ticks are too.
    sizes = {b - a for a, b in zip(firsts, firsts[1:], strict=False)}
    assert len(sizes) == 1
    gaps = {b.timestamp_us - a.timestamp_us for a, b in zip(batches, batches[1:], strict=False)}
    assert len(gaps) == 1


# -- the summary, under the shipped UI configuration ---------------------------------------------


SUMMARY = (
    n.LOGPROBS_PERPLEXITY,
    n.LOGPROBS_MIN,
    n.LOGPROBS_MIN_INDEX,
    n.LOGPROBS_LOW_CONFIDENCE_COUNT,
    n.LOGPROBS_LOW_CONFIDENCE_THRESHOLD,
    n.LOGPROBS_MEAN,
    n.LOGPROBS_SUM,
    n.LOGPROBS_TOKEN_COUNT,
    n.LOGPROBS_ENTROPY_MEAN,
    n.LOGPROBS_MARGIN_MEAN,
    n.LOGPROBS_EVENTS_MODE,
    n.LOGPROBS_STREAM_COMPLETED,
)


def test_the_shipped_ui_configuration() -> None:
    config = ui_config(UI_CONFIG)
    assert config["useOpenTelemetryTerms"] is True  # logs labelled by event name
    prefixes = config["topTagPrefixes"]
    assert isinstance(prefixes, list) and all(isinstance(p, str) for p in prefixes)
    assert prefixes[0] == "error" and prefixes[2] == n.LOGPROBS_PERPLEXITY


def test_every_summary_attribute_sorts_above_the_messages(otel: InMemoryOtel) -> None:
    span = record(otel, entries(2000, low_every=97))
    keys = [tag.key for tag in span.tags]
    assert set(SUMMARY) <= set(keys)
    prefixes = ui_config(UI_CONFIG)["topTagPrefixes"]
    assert isinstance(prefixes, list)
    shown = order_tags(keys, prefixes)
    messages = min(shown.index(n.GEN_AI_INPUT_MESSAGES), shown.index(n.GEN_AI_OUTPUT_MESSAGES))
    assert all(shown.index(key) < messages for key in SUMMARY), shown
    # The figures a person looks for first, first.
    assert shown[:3] == [n.LOGPROBS_PERPLEXITY, n.LOGPROBS_MIN, n.LOGPROBS_MIN_INDEX]
    # Without the configuration, alphabetical order buries them under the messages.
    plain = order_tags(keys, [])
    assert plain.index(n.GEN_AI_INPUT_MESSAGES) < plain.index(n.LOGPROBS_PERPLEXITY)


def test_errors_read_first(otel: InMemoryOtel) -> None:
    span = record(otel, entries(30), error=TimeoutError("the server stalled"))
    prefixes = ui_config(UI_CONFIG)["topTagPrefixes"]
    assert isinstance(prefixes, list)
    shown = order_tags([tag.key for tag in span.tags], prefixes)
    assert shown[:4] == [
        "error",
        n.ERROR_TYPE,
        "otel.status_code",
        "otel.status_description",
    ]
    assert span.tag("error").text == "true"
    assert shown.index(n.LOGPROBS_PERPLEXITY) < shown.index(n.GEN_AI_INPUT_MESSAGES)
    [exception] = logs(span, "exception")
    assert exception.keys()[:2] == ["event", "exception.escaped"]
    assert exception.get("exception.type").text == "TimeoutError"
