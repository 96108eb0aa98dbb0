"""The reader's and the CLI's figures are the writer's: NaN skipped and counted, -inf kept."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import pytest

from logprobscope import TokenLogprob
from logprobscope._figures import LogprobStats, least_likely, low_confidence_spans, summarize
from logprobscope.cli._render import Output, print_summary
from logprobscope.report import Alternative, ModelCall, TokenRecord, render_html

NAN = math.nan
INF = math.inf


def _call(logprobs: list[float], *, alternatives: list[list[float]] | None = None) -> ModelCall:
    """A model call without summary attributes: every figure is computed from the tokens."""
    rows = alternatives or [[] for _ in logprobs]
    tokens = tuple(
        TokenRecord(i, lp, f"t{i}", alternatives=tuple(Alternative(None, a) for a in rows[i]))
        for i, lp in enumerate(logprobs)
    )
    return ModelCall(
        "0" * 32, "0" * 16, None, "chat m", "CLIENT", 0, 1, "UNSET", "", {}, tokens=tokens
    )


def test_the_issue_example_nan_is_skipped_not_propagated() -> None:
    call = _call([-0.1, NAN, -0.2])
    assert call.perplexity == pytest.approx(1.1618, abs=1e-4)  # was NaN in the CLI
    assert call.mean_logprob == pytest.approx(-0.15)
    assert call.sum_logprob == pytest.approx(-0.3)
    assert call.min_logprob == -0.2 and call.min_index == 2
    assert call.low_confidence_count == 0


@pytest.mark.parametrize(
    "logprobs",
    [
        [-0.1, NAN, -0.2],
        [-0.5, -INF, -0.1],
        [-9999.0, -0.01, 1e-7],
        [NAN, 800.0, -3.0, INF, -0.7],
        [-0.3],
    ],
    ids=["nan", "neg-inf", "floor-and-positive", "uncounted", "one"],
)
def test_model_call_figures_are_the_writers(logprobs: list[float]) -> None:
    alternatives = [[lp, -1.5, NAN] for lp in logprobs]
    stats = LogprobStats()
    for lp, row in zip(logprobs, alternatives, strict=True):
        stats.add(lp, row)
    expected = stats.summary()
    call = _call(logprobs, alternatives=alternatives)
    assert (call.sum_logprob, call.mean_logprob, call.perplexity) == (
        expected.sum,
        expected.mean,
        expected.perplexity,
    )
    assert (call.min_logprob, call.min_index) == (expected.min, expected.min_index)
    assert call.low_confidence_count == expected.low_confidence_count
    assert (call.entropy_mean, call.margin_mean) == (expected.entropy_mean, expected.margin_mean)
    assert summarize(logprobs, top_logprobs=alternatives) == expected


def test_no_counted_token_no_figures() -> None:
    call = _call([NAN, NAN])
    assert call.token_count == 2
    assert call.perplexity is None and call.mean_logprob is None and call.min_index is None
    assert call.low_confidence_count is None  # as the writer: no summary attribute at all


def test_span_attributes_win_over_computed() -> None:
    call = _call([-0.1, -0.2])
    spanned = replace(call, attributes={"logprobs.perplexity": 9.0, "logprobs.min_index": 0})
    assert spanned.perplexity == 9.0 and spanned.min_index == 0
    assert spanned.mean_logprob == pytest.approx(-0.15)  # not in the span: computed


def test_least_likely_skips_what_the_figures_skip() -> None:
    logprobs = [-0.5, NAN, -INF, -2.0, 900.0, -2.0, INF]
    assert least_likely(logprobs, count=10) == [2, 3, 5, 0]  # -inf first, ties by index
    assert least_likely(logprobs, count=2) == [2, 3]
    assert least_likely([NAN, NAN], count=3) == []
    assert least_likely(logprobs, count=-1) == []


def test_low_confidence_spans_nan_is_not_low() -> None:
    low = -2.0  # p 0.135
    assert low_confidence_spans([low, low, NAN, low, -0.1, -INF, INF, 900.0, low]) == [
        (0, 2),
        (3, 4),
        (5, 6),
        (8, 9),
    ]
    assert low_confidence_spans([NAN, NAN]) == []
    assert low_confidence_spans([-0.1, -0.2], threshold=0.95) == [(0, 2)]


def test_terminal_summary_with_a_nan_token() -> None:
    tokens = [
        TokenLogprob(token=" a", logprob=-0.1),
        TokenLogprob(token=" b", logprob=NAN),
        TokenLogprob(token=" c", logprob=-0.2),
    ]
    stream = io.StringIO()
    print_summary(Output(stream, color=False), tokens)
    text = stream.getvalue()
    first = text.splitlines()[0]
    assert first == (
        "── 3 tokens · perplexity 1.1618 · mean logprob -0.1500 · min p 0.8187 at #2 ' c'"
        " · 1 without a logprob"
    )
    assert "nan" not in text.lower()
    least = text.split("least likely tokens:\n")[1].split("low-confidence")[0]
    assert "#2" in least and "#0" in least and "#1" not in least


def test_page_least_likely_table_leaves_nan_out() -> None:
    page = render_html([_call([-0.1, NAN, -3.0])])
    table = page.split("<h3>Least likely tokens</h3>")[1].split("</table>")[0]
    assert '<td class="num">2</td>' in table and '<td class="num">0</td>' in table
    assert '<td class="num">1</td>' not in table
    assert "<dt>perplexity</dt><dd>4.7115</dd>" in page
