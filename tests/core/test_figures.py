"""Online statistics against a straightforward reference, and the non-finite edge cases as
they reach the span and the metrics."""

from __future__ import annotations

import math
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logprobscope.otel import LogprobStats, LogprobTelemetry, ResponseFacts
from tests.support.otel import InMemoryOtel, histogram_points, number_points

INF = math.inf
NAN = math.nan

logprob = st.one_of(
    st.sampled_from([-INF, NAN, -9999.0, 0.0, -0.0, INF, 800.0]),
    st.floats(min_value=-60.0, max_value=0.0),
    st.floats(min_value=-1e6, max_value=-60.0),
    st.floats(min_value=0.0, max_value=1e-6),  # rounding makes some servers go slightly over 0
)
token = st.tuples(logprob, st.lists(logprob, max_size=5))


def _usable(lp: float) -> bool:
    return not math.isnan(lp) and lp <= 709.0


def reference(tokens: list[tuple[float, list[float]]], threshold: float) -> dict[str, Any]:
    """The statistics, computed the obvious way over the whole list."""
    valid = [(i, lp) for i, (lp, _) in enumerate(tokens) if _usable(lp)]
    out: dict[str, Any] = {"token_count": len(tokens), "nan_count": len(tokens) - len(valid)}
    if not valid:
        return out
    lps = [lp for _, lp in valid]
    total = -INF if -INF in lps else math.fsum(lps)
    mean = total / len(lps)
    try:
        perplexity = math.exp(-mean)
    except OverflowError:
        perplexity = INF
    lowest = min(lps)
    entropies: list[float] = []
    margins: list[float] = []
    for lp, tops in tokens:
        if not _usable(lp):
            continue
        alts = [a for a in tops if _usable(a)]
        if alts:
            entropies.append(-sum(math.exp(a) * a for a in alts if math.exp(a) > 0))
        if len(alts) >= 2:
            probs = sorted((math.exp(a) for a in alts), reverse=True)
            margins.append(probs[0] - probs[1])
    out.update(
        sum=total,
        mean=mean,
        perplexity=perplexity,
        min=lowest,
        min_index=next(i for i, lp in valid if lp == lowest),
        entropy_mean=sum(entropies) / len(entropies) if entropies else None,
        margin_mean=sum(margins) / len(margins) if margins else None,
        low_confidence_count=sum(math.exp(lp) < threshold for lp in lps),
        probabilities=[math.exp(lp) for lp in lps],
    )
    return out


def _close(actual: float | None, expected: float | None, key: str) -> None:
    if expected is None or actual is None:
        assert actual == expected, key
    elif math.isinf(expected):
        assert actual == expected, key
    else:
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9), key


def _columns(
    tokens: list[tuple[float, list[float]]],
) -> tuple[array[float], array[float], array[int]]:
    logprobs = array("d", (lp for lp, _ in tokens))
    tops = array("d", (a for _, alts in tokens for a in alts))
    offsets = array("q", [0])
    for _, alts in tokens:
        offsets.append(offsets[-1] + len(alts))
    return logprobs, tops, offsets


@settings(max_examples=400, deadline=None)
@given(
    tokens=st.lists(token, max_size=40),
    threshold=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    split=st.integers(min_value=0, max_value=40),
)
def test_online_equals_reference(
    tokens: list[tuple[float, list[float]]], threshold: float, split: int
) -> None:
    stats = LogprobStats(threshold)
    logprobs, tops, offsets = _columns(tokens)
    probabilities: array[float] = array("d")
    cut = min(split, len(tokens))  # chunks: the statistics must not depend on how they come
    stats.add_columns(logprobs, tops, offsets, 0, cut, probabilities)
    stats.add_columns(logprobs, tops, offsets, cut, len(tokens), probabilities)
    summary = stats.summary()._asdict()
    expected = reference(tokens, threshold)
    assert summary["token_count"] == expected["token_count"]
    assert summary["nan_count"] == expected["nan_count"]
    if "sum" not in expected:
        assert summary["sum"] is None and summary["mean"] is None
        assert summary["perplexity"] is None and summary["min"] is None
        assert summary["low_confidence_count"] == 0
        assert len(probabilities) == 0
        return
    for key in ("sum", "mean", "perplexity", "min", "entropy_mean", "margin_mean"):
        _close(summary[key], expected[key], key)
    assert summary["min_index"] == expected["min_index"]
    assert summary["low_confidence_count"] == expected["low_confidence_count"]
    assert list(probabilities) == pytest.approx(expected["probabilities"], rel=1e-12, abs=0)


def test_add_one_by_one() -> None:
    stats = LogprobStats()
    assert stats.add(-0.1, [-0.1, -2.5]) == pytest.approx(math.exp(-0.1))
    assert math.isnan(stats.add(NAN))
    assert stats.add(-INF, []) == 0.0
    summary = stats.summary()
    assert summary.token_count == 3 and summary.nan_count == 1
    assert summary.sum == -INF and summary.perplexity == INF
    assert summary.min == -INF and summary.min_index == 2


def test_long_sums_keep_their_precision() -> None:
    stats = LogprobStats()
    values = array("d", [-1e-9] * 1_000_000 + [-1e6])
    stats.add_columns(values, array("d"), array("q", [0] * 1_000_002), 0, len(values), array("d"))
    assert stats.sum == math.fsum(values)


def test_empty_has_no_statistics() -> None:
    summary = LogprobStats().summary()
    assert summary.token_count == 0
    assert summary.sum is summary.mean is summary.perplexity is summary.min is None


# -- the edge cases as exported ----------------------------------------------------------------


def _call(otel: InMemoryOtel, entries: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    core = LogprobTelemetry(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        **options,
    )
    call = core.start_call(model="m", stream=False, params={"logprobs": True})
    call.add_tokens(entries, time_ns=1_000)
    call.set_response(ResponseFacts(model="m-1"))
    call.end()
    return dict(otel.span().attributes or {})


def _entry(lp: float, *alts: float) -> dict[str, Any]:
    return {
        "token": "x",
        "logprob": lp,
        "top_logprobs": [{"token": "y", "logprob": a} for a in alts],
    }


def test_minus_infinity(otel: InMemoryOtel) -> None:
    attrs = _call(otel, [_entry(-0.5, -0.5, -INF), _entry(-INF, -0.1, -INF)])
    assert attrs["logprobs.sum"] == -INF and attrs["logprobs.mean"] == -INF
    assert attrs["logprobs.perplexity"] == INF
    assert attrs["logprobs.min"] == -INF and attrs["logprobs.min_index"] == 1
    assert attrs["logprobs.low_confidence.count"] == 1
    assert attrs["logprobs.margin.mean"] == pytest.approx((math.exp(-0.5) + math.exp(-0.1)) / 2)
    metrics = otel.metrics()
    # Histograms take finite values only: no perplexity observation; p = 0 is finite.
    assert "logprobs.response.perplexity" not in metrics
    [min_p] = histogram_points(metrics["logprobs.response.min_probability"])
    assert min_p.count == 1 and min_p.sum == 0.0
    [probability] = histogram_points(metrics["logprobs.token.probability"])
    assert probability.count == 2 and probability.min == 0.0
    [low] = number_points(metrics["logprobs.token.low_confidence"])
    assert low.value == 1


def test_nan_is_counted_but_not_a_statistic(otel: InMemoryOtel) -> None:
    attrs = _call(otel, [_entry(-0.5), _entry(NAN), {"token": "z", "logprob": "oops"}])
    assert attrs["logprobs.token_count"] == 3
    assert attrs["logprobs.sum"] == -0.5 and attrs["logprobs.mean"] == -0.5
    assert attrs["logprobs.min_index"] == 0
    [probability] = histogram_points(otel.metrics()["logprobs.token.probability"])
    assert probability.count == 1
    events = otel.span().events
    assert len(events) == 3 and math.isnan(events[1].attributes["logprobs.token.logprob"])  # type: ignore[index,arg-type]


def test_floors_are_just_very_negative(otel: InMemoryOtel) -> None:
    attrs = _call(otel, [_entry(-9999.0, -9999.0), _entry(-0.1, -0.1, -9999.0)])
    assert attrs["logprobs.sum"] == pytest.approx(-9999.1)
    assert attrs["logprobs.perplexity"] == INF  # exp(4999.55) overflows: infinite, no error
    assert attrs["logprobs.min"] == -9999.0
    assert attrs["logprobs.entropy.mean"] == pytest.approx(-math.exp(-0.1) * -0.1 / 2)
    metrics = otel.metrics()
    assert "logprobs.response.perplexity" not in metrics
    [probability] = histogram_points(metrics["logprobs.token.probability"])
    assert probability.count == 2 and probability.min == 0.0


def test_no_alternatives_no_entropy_nor_margin(otel: InMemoryOtel) -> None:
    attrs = _call(otel, [_entry(-0.2), _entry(-0.3)])
    assert "logprobs.entropy.mean" not in attrs and "logprobs.margin.mean" not in attrs
    assert "logprobs.response.entropy" not in otel.metrics()


def test_one_alternative_entropy_without_margin(otel: InMemoryOtel) -> None:
    attrs = _call(otel, [_entry(-0.2, -0.2)])
    assert attrs["logprobs.entropy.mean"] == pytest.approx(0.2 * math.exp(-0.2))
    assert "logprobs.margin.mean" not in attrs


def test_empty_response(otel: InMemoryOtel) -> None:
    attrs = _call(otel, [])
    assert attrs["logprobs.token_count"] == 0
    assert not [
        k
        for k in attrs
        if k.startswith("logprobs.")
        and k
        not in {
            "logprobs.token_count",
            "logprobs.enabled",
            "logprobs.top_logprobs",
            "logprobs.low_confidence.threshold",
            "logprobs.events.mode",
        }
    ]
    names = set(otel.metrics())
    assert names == {"gen_ai.client.operation.duration"}  # no per-call logprob histograms


def test_threshold_validation() -> None:
    for bad in (-0.1, 1.5, NAN):
        with pytest.raises(ValueError, match="low_confidence_threshold"):
            LogprobTelemetry(low_confidence_threshold=bad)
    with pytest.raises(ValueError, match="events"):
        LogprobTelemetry(events="all")  # type: ignore[arg-type]
