"""`record_many` exports exactly what one `Histogram.record` per value exports.

Each test records the same values into two SDK meter providers built alike: one value at a
time into the first, with `record_many` into the second, and compares what their readers
collect (every field of every data point but the timestamps).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import random
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.metrics._internal.instrument import _ProxyHistogram
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    MeterProvider,
)
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics._internal._view_instrument_match import _ViewInstrumentMatch
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.version import __version__ as sdk_version

from logprobscope.otel import _bulk
from logprobscope.otel import _span_events as span_events
from logprobscope.otel._bulk import AttributeSet
from logprobscope.otel._metrics import NO_EXEMPLAR_CONTEXT
from logprobscope.otel._span_events import CHECKED_SDK

ATTRS: dict[str, Any] = {
    "gen_ai.request.model": "m",
    "gen_ai.response.model": "m-1",
    "server.port": 8080,
}
BUCKETS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]

# The fast paths apply to the SDK versions they were checked against; others go public.
FAST = _bulk._SDK is not None


def test_the_fast_paths_are_on_exactly_for_the_checked_sdk_versions() -> None:
    assert FAST == sdk_version.startswith(CHECKED_SDK)
    assert (span_events._SDK is not None) == FAST


Recorder = Callable[[Histogram, Sequence[float], dict[str, Any]], None]


def one_by_one(histogram: Histogram, values: Sequence[float], attrs: dict[str, Any]) -> None:
    for value in values:
        histogram.record(value, attrs, NO_EXEMPLAR_CONTEXT)


def at_once(histogram: Histogram, values: Sequence[float], attrs: dict[str, Any]) -> None:
    AttributeSet(attrs).record_many(histogram, values, NO_EXEMPLAR_CONTEXT)


class Side:
    """A meter provider, its readers and one histogram, built the same way for both sides."""

    def __init__(
        self,
        *,
        views: Sequence[View] = (),
        readers: int = 1,
        delta: bool = False,
        exemplar_filter: object = None,
        cardinality: int | None = None,
    ) -> None:
        # The SDK's default otherwise: cumulative.
        temporality: dict[type, AggregationTemporality] | None = (
            {SdkHistogram: AggregationTemporality.DELTA} if delta else None
        )
        limits: Any = {SdkHistogram: cardinality} if cardinality is not None else None
        self.readers = [
            InMemoryMetricReader(preferred_temporality=temporality, cardinality_limits=limits)
            for _ in range(readers)
        ]
        kwargs: dict[str, Any] = {}
        if exemplar_filter is not None:
            kwargs["exemplar_filter"] = exemplar_filter
        self.provider = MeterProvider(metric_readers=self.readers, views=list(views), **kwargs)
        self.histogram = self.provider.get_meter("t").create_histogram(
            "h", unit="1", explicit_bucket_boundaries_advisory=BUCKETS
        )

    def collect(self) -> list[list[tuple[object, ...]]]:
        return [_points(reader) for reader in self.readers]


def _points(reader: InMemoryMetricReader) -> list[tuple[object, ...]]:
    data = reader.get_metrics_data()
    out: list[tuple[object, ...]] = []
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    fields = {
                        f.name: getattr(point, f.name)
                        for f in dataclasses.fields(point)
                        if f.name not in ("start_time_unix_nano", "time_unix_nano", "exemplars")
                    }
                    exemplars = sorted(
                        (e.value, tuple(sorted((e.filtered_attributes or {}).items())))
                        for e in point.exemplars
                    )
                    out.append(
                        (metric.name, repr(sorted(fields.items(), key=str)), repr(exemplars))
                    )
    return sorted(out, key=repr)


def both(
    batches: Sequence[Sequence[float]],
    *,
    attrs: Sequence[dict[str, Any]] = (ATTRS,),
    collect_between: bool = False,
    **side: Any,
) -> tuple[list[Any], list[Any]]:
    """The points collected after recording `batches` (each under every attribute set)."""
    results = []
    for recorder in (one_by_one, at_once):
        s = Side(**side)
        seen: list[Any] = []
        for batch in batches:
            for a in attrs:
                recorder(s.histogram, batch, a)
            if collect_between:
                seen.append(s.collect())
        seen.append(s.collect())
        results.append(seen)
    return results[0], results[1]


@pytest.fixture
def no_per_value_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the SDK's per-measurement step: the bulk path must not take it."""
    calls = [0]
    original = _ViewInstrumentMatch.consume_measurement

    def counting(self: _ViewInstrumentMatch, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(_ViewInstrumentMatch, "consume_measurement", counting)
    yield calls


VALUES = [0.5, 0.01, 0.0, 1.0, 0.999, 0.9990001, 0.3, 0.3, 1.2, 1e-300, 0.05]


def test_the_default_view_matches_per_value_records(no_per_value_path: list[int]) -> None:
    a, b = both([VALUES, [0.2] * 50, VALUES[::-1]])
    assert a == b
    assert a[-1][0], "nothing was collected"
    # Only the per-value side went through the SDK's per-measurement step (both, with an
    # SDK whose internals were not checked).
    assert no_per_value_path[0] == (len(VALUES) * 2 + 50) * (1 if FAST else 2)


def test_the_fast_path_is_taken_for_an_sdk_histogram(no_per_value_path: list[int]) -> None:
    side = Side()
    at_once(side.histogram, VALUES * 100, ATTRS)
    assert no_per_value_path[0] == (0 if FAST else len(VALUES) * 100)
    [point] = side.collect()[0]
    assert f"('count', {len(VALUES) * 100})" in str(point[1])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=40),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_any_values_and_temporality(batches: list[list[float]], delta: bool) -> None:
    a, b = both(batches, delta=delta, collect_between=True)
    assert a == b


def test_delta_and_cumulative_across_collections() -> None:
    for delta in (False, True):
        a, b = both([VALUES, [], [0.7, 0.7]], delta=delta, collect_between=True)
        assert a == b


def test_views_with_their_own_buckets_and_attribute_filter() -> None:
    views = [
        View(
            instrument_name="h",
            aggregation=ExplicitBucketHistogramAggregation([0.25, 0.5, 0.75], record_min_max=False),
            attribute_keys={"gen_ai.request.model"},
        )
    ]
    a, b = both([VALUES, [0.25, 0.75]], views=views)
    assert a == b
    assert "record_min_max" not in repr(a)  # sanity: the view's aggregation was used
    assert "(0.25, 0.5, 0.75)" in repr(a)


def test_an_exponential_view_and_a_second_explicit_one(no_per_value_path: list[int]) -> None:
    views = [
        View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation()),
        View(instrument_name="h", name="h.explicit"),
    ]
    a, b = both([VALUES, [0.3] * 10], views=views)
    assert a == b
    names = {p[0] for p in a[-1][0]}
    assert names == {"h", "h.explicit"}


def test_a_drop_view() -> None:
    a, b = both([VALUES], views=[View(instrument_name="h", aggregation=DropAggregation())])
    assert a == b == [[[]]]


def test_two_readers_and_several_attribute_sets() -> None:
    attrs = [ATTRS, {**ATTRS, "gen_ai.response.model": "m-2"}, {}]
    a, b = both([VALUES, [0.9]], attrs=attrs, readers=2, delta=True, collect_between=True)
    assert a == b
    assert len(a[0][0]) == 3 and len(a[0][1]) == 3


def test_the_cardinality_limit_overflows_alike() -> None:
    attrs = [{"k": str(i)} for i in range(5)]
    a, b = both([VALUES], attrs=attrs, cardinality=2)
    assert a == b
    assert "otel.metric.overflow" in repr(a)


def test_an_always_on_exemplar_filter_offers_every_value(no_per_value_path: list[int]) -> None:
    a, b = both([VALUES], exemplar_filter=AlwaysOnExemplarFilter())
    assert a == b
    assert "filtered_attributes" not in repr(a) and "0.999" in a[-1][0][0][2]  # exemplars


def _single(
    record: Callable[[Any, float, dict[str, Any], Context], None], **side: Any
) -> list[Any]:
    """Per-call observations: histograms and a counter, several attribute sets, in the
    context of a sampled span (exemplars) and of none."""
    s = Side(**side)
    random.seed(7)  # a counter's exemplar reservoir samples at random: the same draws
    meter = s.provider.get_meter("t")
    counter = meter.create_counter("c", unit="{token}")
    other = meter.create_histogram("h2", unit="s")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("call") as span:
        sampled = trace.set_span_in_context(span)
    for i, value in enumerate([*VALUES, 3.0, 7, 0]):
        context = sampled if i % 3 else NO_EXEMPLAR_CONTEXT
        attrs = ATTRS if i % 2 else {**ATTRS, "error.type": "Timeout"}
        record(s.histogram, value, attrs, context)
        record(other, value * 10, attrs, context)
        record(counter, int(value * 10), attrs, context)
    return s.collect()


def _public(instrument: Any, value: float, attrs: dict[str, Any], context: Context) -> None:
    if isinstance(instrument, Histogram):
        instrument.record(value, attrs, context)
    else:
        instrument.add(value, attrs, context)


def _prepared(instrument: Any, value: float, attrs: dict[str, Any], context: Context) -> None:
    AttributeSet(attrs).record(instrument, value, context)


@pytest.mark.parametrize("delta", [False, True])
def test_single_observations_and_their_exemplars(delta: bool) -> None:
    a = _single(_public, delta=delta)
    b = _single(_prepared, delta=delta)
    assert a == b
    assert "trace_id" not in repr(a)  # the comparison holds exemplars by value
    assert any(p[2] != "[]" for p in a[0])  # exemplars were sampled from the span


def test_single_observations_through_views_and_filters() -> None:
    views = [
        View(instrument_name="h", attribute_keys={"error.type"}),
        View(instrument_name="c", aggregation=DropAggregation()),
        View(instrument_name="h2", aggregation=ExponentialBucketHistogramAggregation()),
    ]
    for exemplar_filter in (None, AlwaysOnExemplarFilter(), AlwaysOffExemplarFilter()):
        a = _single(_public, views=views, exemplar_filter=exemplar_filter, readers=2)
        b = _single(_prepared, views=views, exemplar_filter=exemplar_filter, readers=2)
        assert a == b


def test_a_prepared_set_reused_across_instruments(no_per_value_path: list[int]) -> None:
    side = Side()
    counter = side.provider.get_meter("t").create_counter("c")
    prepared = AttributeSet(ATTRS)
    for value in VALUES:
        prepared.record(side.histogram, value, NO_EXEMPLAR_CONTEXT)
        prepared.record(counter, value, NO_EXEMPLAR_CONTEXT)
    prepared.record(counter, -1.0, NO_EXEMPLAR_CONTEXT)  # the SDK's: logged and dropped
    # All went straight to the aggregations (with a checked SDK).
    assert no_per_value_path[0] == (0 if FAST else 2 * len(VALUES))
    reference = Side()
    reference_counter = reference.provider.get_meter("t").create_counter("c")
    for value in VALUES:
        reference.histogram.record(value, ATTRS, NO_EXEMPLAR_CONTEXT)
        reference_counter.add(value, ATTRS, NO_EXEMPLAR_CONTEXT)
    assert side.collect() == reference.collect()


def test_rejected_values_are_left_to_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    values = [0.5, math.nan, -1.0, math.inf, 0.25, -math.inf]
    with caplog.at_level(logging.WARNING):
        a, b = both([values])
    assert a == b
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # Four rejected values, warned about by the SDK on each side.
    assert len(warnings) == 8
    assert "('count', 2)" in repr(a)
    side = Side()
    at_once(side.histogram, [math.nan], ATTRS)  # nothing left to add: no point
    assert side.collect() == [[]]


def test_a_proxy_histogram_once_its_provider_is_set(no_per_value_path: list[int]) -> None:
    proxy = _ProxyHistogram("h", unit="1", explicit_bucket_boundaries_advisory=BUCKETS)
    at_once(proxy, VALUES, ATTRS)  # no provider yet: nothing to record into, no error
    side = Side()
    proxy.on_meter_set(side.provider.get_meter("t"))
    at_once(proxy, VALUES, ATTRS)
    reference = Side()
    one_by_one(reference.histogram, VALUES, ATTRS)
    assert side.collect() == reference.collect()
    assert no_per_value_path[0] == len(VALUES) * (1 if FAST else 2)  # the reference's only


class Recording(Histogram):
    """Not the SDK's: every value must reach `record`, as given."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, object, object]] = []

    def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        self.calls.append((amount, attributes, context))


def test_another_histogram_gets_every_value_through_record() -> None:
    histogram = Recording()
    prepared = AttributeSet(ATTRS)
    prepared.record_many(histogram, VALUES, NO_EXEMPLAR_CONTEXT)
    assert histogram.calls == [(v, ATTRS, NO_EXEMPLAR_CONTEXT) for v in VALUES]
    prepared.record_many(histogram, [], NO_EXEMPLAR_CONTEXT)
    prepared.record(histogram, 0.5, NO_EXEMPLAR_CONTEXT)
    assert histogram.calls[-1] == (0.5, ATTRS, NO_EXEMPLAR_CONTEXT)
    assert len(histogram.calls) == len(VALUES) + 1


def test_nothing_is_lost_to_a_delta_collection_running_meanwhile() -> None:
    # A delta reader drops the aggregations it collects: values added concurrently must land
    # in this collection or the next, never in a dropped aggregation.
    side = Side(delta=True)
    reader = side.readers[0]
    batches, size = 300, 64
    counted = [0]
    done = threading.Event()

    def collect() -> None:
        while True:
            finished = done.is_set()
            data = reader.get_metrics_data()
            if data is not None:
                for resource in data.resource_metrics:
                    for scope in resource.scope_metrics:
                        for metric in scope.metrics:
                            points = metric.data.data_points
                            counted[0] += sum(getattr(p, "count", 0) for p in points)
            if finished:
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        collector = threading.Thread(target=collect)
        collector.start()
        for i in range(batches):
            at_once(side.histogram, [0.5] * size, {"batch": i % 7})
        done.set()
        collector.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert not collector.is_alive()
    assert counted[0] == batches * size


def test_a_reader_added_later_gets_what_comes_after() -> None:
    results = []
    for record in (one_by_one, at_once):
        side = Side()
        record(side.histogram, VALUES, ATTRS)
        late = InMemoryMetricReader()
        side.provider.add_metric_reader(late)  # the SDK replaces its reader storages
        record(side.histogram, [0.25, 0.75], ATTRS)
        results.append((side.collect(), _points(late)))
    assert results[0] == results[1]
    assert "('count', 2)" in repr(results[1][1])


def test_providers_no_longer_used_are_collected() -> None:
    # The prepared sets live with their provider's instruments: nothing keeps a provider
    # (its readers, their aggregations) alive once the caller lets it go.
    from logprobscope.otel._metrics import instruments_for

    readers = []
    for _ in range(20):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        instruments = instruments_for(provider)
        prepared = instruments.attribute_set(dict(ATTRS))
        prepared.record(instruments.duration, 0.5, NO_EXEMPLAR_CONTEXT)
        prepared.record_many(instruments.token_probability, VALUES, NO_EXEMPLAR_CONTEXT)
        readers.append(weakref.ref(reader))
        provider.shutdown()
        del reader, provider, instruments, prepared
    gc.collect()
    assert sum(r() is not None for r in readers) == 0


def test_attribute_sets_tell_true_one_and_one_point_oh_apart() -> None:
    from logprobscope.otel._metrics import instruments_for

    instruments = instruments_for(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    sets = {id(instruments.attribute_set({"k": v})) for v in (True, 1, 1.0)}
    assert len(sets) == 3
    assert instruments.attribute_set({"k": 1}) is instruments.attribute_set({"k": 1})
