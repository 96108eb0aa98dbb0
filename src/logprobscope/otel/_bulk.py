"""Many observations of one histogram at once, recorded as the OpenTelemetry SDK records them
one by one.

A call's per-token and per-chunk observations (`logprobs.token.probability`,
`gen_ai.client.operation.time_per_output_chunk`) come by the thousand. The SDK's
`Histogram.record` costs 6-14 µs each on a small machine (it builds a `Measurement`, cleans
and hashes the attributes, asks the exemplar filter, takes a lock): more than everything else
a token costs. `record_many` finds the SDK's aggregation for the attribute set once, and adds
the values to its bucket counts, sum, min and max under the aggregation's own lock: the data
points exported are the same as with one `record` per value, in the same order of addition
(tests/otel/test_bulk.py compares the two).

It does so only when it recognizes every piece: an SDK histogram (directly, or behind the
API's proxy before the global provider was set), enabled, a synchronous measurement consumer,
an exemplar filter that samples none of these observations (they carry no span: see
`NO_EXEMPLAR_CONTEXT`), and the view-instrument internals of the SDK versions this was checked
against. Otherwise, and per view for aggregations other than explicit buckets (an exponential
histogram, say), the values go through the SDK one by one: slower, never different. Values
the SDK rejects (negative, not finite) are handed to `Histogram.record`, which logs and drops
them as it always does.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from time import time_ns
from typing import Any, Protocol, cast

from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.util.types import AttributeValue

__all__ = ["record_many"]

_INF = math.inf


class _Internals(Protocol):
    """What this module needs of the SDK's private metric classes (resolved once)."""

    histogram: type[Any]
    proxy: type[Any]
    consumer: type[Any]
    match: type[Any]
    explicit: type[Any]
    quiet_filters: tuple[type[Any], ...]
    measurement: Callable[..., Any]
    hash_attributes: Callable[[object], object]


def _load() -> _Internals | None:
    # Private SDK names: any of them missing (another SDK version) means one record per value.
    try:
        from opentelemetry.metrics._internal.instrument import _ProxyHistogram
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, TraceBasedExemplarFilter
        from opentelemetry.sdk.metrics._internal import _view_instrument_match as vim
        from opentelemetry.sdk.metrics._internal.aggregation import (
            _ExplicitBucketHistogramAggregation,
        )
        from opentelemetry.sdk.metrics._internal.instrument import Histogram as SdkHistogram
        from opentelemetry.sdk.metrics._internal.measurement import Measurement
        from opentelemetry.sdk.metrics._internal.measurement_consumer import (
            SynchronousMeasurementConsumer,
        )

        class Found:
            histogram = SdkHistogram
            proxy = _ProxyHistogram
            consumer = SynchronousMeasurementConsumer
            match = vim._ViewInstrumentMatch
            explicit = _ExplicitBucketHistogramAggregation
            quiet_filters = (TraceBasedExemplarFilter, AlwaysOffExemplarFilter)
            measurement = Measurement
            hash_attributes = staticmethod(vim._hash_attributes)

        return cast(_Internals, Found)
    except (ImportError, AttributeError):  # pragma: no cover - depends on the SDK installed
        return None


_SDK = _load()
_MATCH_FIELDS = (
    "_lock",
    "_view",
    "_attributes_aggregation",
    "_get_or_create_aggregation",
    "_reset_on_collect",
)
_EXPLICIT_FIELDS = ("_lock", "_value", "_sum", "_min", "_max", "_boundaries", "_record_min_max")


def record_many(
    histogram: Histogram,
    values: Sequence[float],
    attributes: Mapping[str, AttributeValue],
    context: Context,
) -> None:
    """Record every value of `values` in `histogram`, with `attributes`, in `context`.

    The same as `for v in values: histogram.record(v, attributes, context)`, in fewer steps
    when the histogram is the OpenTelemetry SDK's (see the module's docstring). `context`
    must sample no exemplar (for instance `NO_EXEMPLAR_CONTEXT`); if the SDK's filter would
    sample one from it, the values are recorded one by one.
    """
    if not values:
        return
    targets = _targets(histogram, attributes, context, values[0])
    if targets is None:
        record = histogram.record
        for value in values:
            record(value, attributes, context)
        return
    real, cleaned, matches = targets
    good: Sequence[float] = values
    if not all(0.0 <= v < _INF for v in values):  # NaN compares false: it is caught too
        good = [v for v in values if 0.0 <= v < _INF]
        for value in values:
            if not 0.0 <= value < _INF:
                histogram.record(value, attributes, context)  # the SDK warns and drops it
    if not good:
        return
    for match in matches:
        _into_match(match, real, cleaned, context, good)


def _targets(
    histogram: Histogram,
    attributes: Mapping[str, AttributeValue],
    context: Context,
    sample: float,
) -> tuple[object, Mapping[str, AttributeValue], list[object]] | None:
    """The SDK histogram, its cleaned attributes and its view matches; None: go one by one."""
    sdk = _SDK
    if sdk is None:
        return None
    real: object = histogram
    if type(real) is sdk.proxy:
        real = getattr(real, "_real_instrument", None)
    if not isinstance(real, sdk.histogram):
        return None
    try:
        if not real._is_enabled():
            return None
        # The SDK's private objects, checked by type or attribute before use.
        consumer = real._measurement_consumer
        if type(consumer) is not sdk.consumer:
            return None
        exemplar_filter = consumer._sdk_config.exemplar_filter
        if type(exemplar_filter) not in sdk.quiet_filters:
            return None
        # One Measurement, built as `record` builds it: the SDK's cleaning of the attributes.
        measurement = sdk.measurement(sample, time_ns(), real, context, dict(attributes))
        cleaned = measurement.attributes
        if exemplar_filter.should_sample(sample, measurement.time_unix_nano, cleaned, context):
            return None
        matches: list[object] = []
        for storage in consumer._reader_storages.values():
            for match in storage._get_or_init_view_instrument_match(real):
                if type(match) is not sdk.match or not all(
                    hasattr(match, name) for name in _MATCH_FIELDS
                ):
                    return None
                matches.append(match)
    except AttributeError:
        return None
    return real, cleaned or {}, matches


def _into_match(
    match: object,
    real: object,
    cleaned: Mapping[str, AttributeValue],
    context: Context,
    values: Sequence[float],
) -> None:
    """Add `values` to `match`'s aggregation of `cleaned`, as its `consume_measurement` does."""
    sdk = cast(_Internals, _SDK)
    m = cast("_Match", match)
    attributes = dict(cleaned)
    keys = m._view._attribute_keys
    if keys is not None:
        attributes = {k: v for k, v in attributes.items() if k in keys}
    key = sdk.hash_attributes(attributes)
    if m._reset_on_collect:
        # Collection discards the aggregations: hold the lock until the values are in.
        with m._lock:
            aggregation = m._get_or_create_aggregation(key, attributes)
            _aggregate(aggregation, real, cleaned, context, values)
        return
    aggregation = m._attributes_aggregation.get(key)
    if aggregation is None:
        with m._lock:
            aggregation = m._get_or_create_aggregation(key, attributes)
    _aggregate(aggregation, real, cleaned, context, values)


def _aggregate(
    aggregation: object,
    real: object,
    cleaned: Mapping[str, AttributeValue],
    context: Context,
    values: Sequence[float],
) -> None:
    sdk = cast(_Internals, _SDK)
    if type(aggregation) is not sdk.explicit or not all(
        hasattr(aggregation, name) for name in _EXPLICIT_FIELDS
    ):
        # Another aggregation (a view's exponential histogram, a drop): the SDK's own step
        # per value, with no exemplar, as the filter decided for this context.
        aggregate = aggregation.aggregate  # type: ignore[attr-defined]
        build = sdk.measurement
        for value in values:
            aggregate(build(value, time_ns(), real, context, cleaned), False)
        return
    a = cast("_Explicit", aggregation)
    bounds = a._boundaries
    with a._lock:
        counts = a._value
        if counts is None:
            counts = a._value = [0] * (len(bounds) + 1)
        total = a._sum
        for value in values:
            total += value  # in order, one by one: the same float sum as per-value records
            counts[bisect_left(bounds, value)] += 1
        a._sum = total
        if a._record_min_max:
            low, high = min(values), max(values)
            if low < a._min:
                a._min = low
            if high > a._max:
                a._max = high


class _Match(Protocol):
    _lock: AbstractContextManager[object]
    _view: _View
    _attributes_aggregation: dict[object, object]
    _reset_on_collect: bool

    def _get_or_create_aggregation(self, key: object, attributes: object) -> object: ...


class _View(Protocol):
    _attribute_keys: set[str] | None


class _Explicit(Protocol):
    _lock: AbstractContextManager[object]
    _value: list[int] | None
    _sum: float
    _min: float
    _max: float
    _boundaries: tuple[float, ...]
    _record_min_max: bool
