"""Metric observations recorded as the OpenTelemetry SDK records them, with its per-record
overhead paid once per attribute set instead of once per value.

A call records thousands of per-token and per-chunk observations
(`logprobs.token.probability`, `gen_ai.client.operation.time_per_output_chunk`) and about ten
per-call ones, all with the same few attribute sets. The SDK's `Histogram.record` and
`Counter.add` cost 6-14 µs each on a small machine: each builds a `Measurement`, cleans the
attribute values, copies, filters and hashes them per view, then finds the aggregation. An
`AttributeSet` does the cleaning once and the hashing once per view, and then hands values to
the same aggregations the SDK would have found, through the SDK's own `aggregate` (with the
exemplar filter asked per value, as the SDK asks it), or, for many values of an
explicit-bucket histogram with no exemplar to offer, by adding them to its bucket counts, sum,
min and max under its lock, in order, as `aggregate` would one by one. The data points and
exemplars exported are the same as with one `record`/`add` per value
(tests/otel/test_bulk.py compares them).

It does so only when it recognizes every piece: an SDK instrument of the SDK's own classes
exactly (directly, or behind the API's proxy before the global provider was set), in an SDK
version named in `CHECKED_SDK`, enabled, a synchronous measurement consumer,
and the view-instrument internals of the SDK versions this was checked against. Anything
else gets the public `record`/`add`, value by value: slower, never different. Values the SDK
rejects (negative, not finite) also go the public way, which logs and drops them.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from time import time_ns
from typing import Any, Protocol, cast

from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.util.types import AttributeValue

__all__ = ["AttributeSet"]

_INF = math.inf


class _Internals(Protocol):
    """What this module needs of the SDK's private metric classes (resolved once)."""

    instruments: tuple[type[Any], ...]
    proxies: tuple[type[Any], ...]
    consumer: type[Any]
    match: type[Any]
    explicit: type[Any]
    quiet_filters: tuple[type[Any], ...]
    value_free_filters: tuple[type[Any], ...]
    measurement: Callable[..., Any]
    hash_attributes: Callable[[object], object]


def _load() -> _Internals | None:
    # Private SDK names: any of them missing (another SDK version) means the public calls.
    try:
        from opentelemetry.metrics._internal.instrument import _ProxyCounter, _ProxyHistogram
        from opentelemetry.sdk.metrics import (
            AlwaysOffExemplarFilter,
            AlwaysOnExemplarFilter,
            TraceBasedExemplarFilter,
        )
        from opentelemetry.sdk.metrics._internal import _view_instrument_match as vim
        from opentelemetry.sdk.metrics._internal.aggregation import (
            _ExplicitBucketHistogramAggregation,
        )
        from opentelemetry.sdk.metrics._internal.instrument import _Counter, _Histogram
        from opentelemetry.sdk.metrics._internal.measurement import Measurement
        from opentelemetry.sdk.metrics._internal.measurement_consumer import (
            SynchronousMeasurementConsumer,
        )

        class Found:
            # The SDK's own classes exactly: a subclass may do more in `record`/`add`.
            instruments = (_Histogram, _Counter)
            proxies = (_ProxyHistogram, _ProxyCounter)
            consumer = SynchronousMeasurementConsumer
            match = vim._ViewInstrumentMatch
            explicit = _ExplicitBucketHistogramAggregation
            quiet_filters = (TraceBasedExemplarFilter, AlwaysOffExemplarFilter)
            # Whose answer depends on the context only (the SDK's own, by their definition).
            value_free_filters = (*quiet_filters, AlwaysOnExemplarFilter)
            measurement = Measurement
            hash_attributes = staticmethod(vim._hash_attributes)

        from opentelemetry.sdk.version import __version__

        from ._span_events import CHECKED_SDK

        return cast(_Internals, Found) if __version__.startswith(CHECKED_SDK) else None
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
_VALUE_FREE_FILTERS = frozenset(_SDK.value_free_filters if _SDK is not None else ())
_new_measurement: Callable[..., Any] = _SDK.measurement if _SDK is not None else tuple
_EXPLICIT_KINDS: set[type] = set()  # explicit-bucket aggregation classes checked so far
_EXPLICIT_FIELDS = ("_lock", "_value", "_sum", "_min", "_max", "_boundaries", "_record_min_max")

Instrument = Histogram | Counter


class AttributeSet:
    """One attribute set, prepared for recording into the SDK's instruments.

    `record` is `histogram.record(value, attributes, context)` or
    `counter.add(value, attributes, context)`; `record_many` is `record` for each value, in
    order. Prepare one per attribute set and reuse it (per call, say): the cleaning and the
    hashing are done on first use and kept. The attributes must not change after.
    """

    __slots__ = ("attributes", "_cleaned", "_keys", "_matches")

    def __init__(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes = attributes
        self._cleaned: Mapping[str, AttributeValue] | None = None
        self._keys: dict[object, tuple[object, dict[str, AttributeValue]]] = {}
        self._matches: dict[object, tuple[object, list[object]]] = {}

    def record(self, instrument: Instrument, value: float, context: Context) -> None:
        """Record `value` in `instrument` with these attributes, in `context`."""
        self.record_all(((instrument, value),), context)

    def record_all(
        self, observations: Iterable[tuple[Instrument, float]], context: Context
    ) -> None:
        """`record` each (instrument, value), in order, at one time. The exemplar filter is
        asked once if its answer cannot depend on the value (the SDK's trace-based,
        always-on and always-off filters), else once per value."""
        now = time_ns()
        decided: bool | None = None
        for instrument, value in observations:
            target = self._target(instrument, value, context) if 0.0 <= value < _INF else None
            if target is None:
                _public(instrument, value, self.attributes, context)
                continue
            real, exemplar_filter, matches = target
            cleaned = self._cleaned
            if decided is not None and type(exemplar_filter) in _VALUE_FREE_FILTERS:
                sample = decided
            else:
                sample = bool(exemplar_filter.should_sample(value, now, cleaned, context))
                if type(exemplar_filter) in _VALUE_FREE_FILTERS:
                    decided = sample
            measurement = _measurement(value, now, real, context, cleaned)
            aggregate = _Aggregate(measurement, sample)
            for match in matches:
                self._into(match, aggregate)

    def record_many(self, histogram: Histogram, values: Sequence[float], context: Context) -> None:
        """Record every value of `values` in `histogram`, in order, in `context`."""
        if not values:
            return
        target = self._target(histogram, values[0], context)
        if target is None:
            for value in values:
                _public(histogram, value, self.attributes, context)
            return
        real, exemplar_filter, matches = target
        good: Sequence[float] = values
        if not all(0.0 <= v < _INF for v in values):  # NaN compares false: it is caught too
            good = [v for v in values if 0.0 <= v < _INF]
            for value in values:
                if not 0.0 <= value < _INF:
                    _public(histogram, value, self.attributes, context)  # logged and dropped
        if not good:
            return
        quiet = type(exemplar_filter) in cast(_Internals, _SDK).quiet_filters and not (
            exemplar_filter.should_sample(good[0], time_ns(), self._cleaned, context)
        )
        if not quiet:  # exemplars to offer: each value through `aggregate`, as the SDK does
            for value in good:
                self.record(histogram, value, context)
            return
        cleaned = self._cleaned
        for match in matches:
            self._into(match, lambda a: _add_all(a, good, real, context, cleaned))

    def _target(
        self, instrument: Instrument, sample: float, context: Context
    ) -> tuple[object, Any, list[object]] | None:
        """The SDK instrument, its exemplar filter and its view matches; None: go public."""
        sdk = _SDK
        if sdk is None:
            return None
        real: Any = instrument  # the SDK's private objects: checked by type before use
        if type(real) in sdk.proxies:
            real = getattr(real, "_real_instrument", None)
        if type(real) not in sdk.instruments:
            return None
        try:
            if not real._is_enabled():
                return None
            consumer = real._measurement_consumer
            if type(consumer) is not sdk.consumer:
                return None
            matches = self._matches_of(real, consumer._reader_storages)
            if matches is None:
                return None
            if self._cleaned is None:
                # As `record` builds a Measurement: the SDK's own cleaning, once.
                built = sdk.measurement(sample, time_ns(), real, context, dict(self.attributes))
                self._cleaned = built.attributes or {}
            return real, consumer._sdk_config.exemplar_filter, matches
        except AttributeError:
            return None

    def _matches_of(self, real: Any, storages: Any) -> list[object] | None:
        """`real`'s view matches in every reader storage, kept with the storages they were read
        from: the SDK never changes an instrument's matches in a storage, and replaces the
        storages (never edits them) when a reader is added or removed. Kept here, not
        globally: a set lives as long as its provider's instruments (no cycle keeps a
        provider alive)."""
        cached = self._matches.get(real)
        if cached is not None and cached[0] is storages:
            return cached[1]
        sdk = cast(_Internals, _SDK)
        matches: list[object] = []
        for storage in storages.values():
            for match in storage._get_or_init_view_instrument_match(real):
                if type(match) is not sdk.match or not all(
                    hasattr(match, name) for name in _MATCH_FIELDS
                ):
                    return None
                matches.append(match)
        self._matches[real] = (storages, matches)
        return matches

    def _into(self, match: Any, apply: Callable[[Any], None]) -> None:
        """`apply` to `match`'s aggregation of these attributes, found (or made) as its
        `consume_measurement` finds it."""
        m: _Match = match
        view = m._view
        found = self._keys.get(view)
        if found is None:
            cleaned: Mapping[str, AttributeValue] = self._cleaned or {}
            attributes = dict(cleaned)
            keys = view._attribute_keys
            if keys is not None:
                attributes = {k: v for k, v in attributes.items() if k in keys}
            found = self._keys[view] = (
                cast(_Internals, _SDK).hash_attributes(attributes),
                attributes,
            )
        key, attributes = found
        if m._reset_on_collect:
            # Collection discards the aggregations: hold the lock until the values are in.
            with m._lock:
                apply(m._get_or_create_aggregation(key, dict(attributes)))
            return
        aggregation = m._attributes_aggregation.get(key)
        if aggregation is None:
            with m._lock:
                aggregation = m._get_or_create_aggregation(key, dict(attributes))
        apply(aggregation)


class _Aggregate:
    """`aggregation.aggregate(measurement, sample)` for `_into`."""

    __slots__ = ("measurement", "sample")

    def __init__(self, measurement: object, sample: bool) -> None:
        self.measurement = measurement
        self.sample = sample

    def __call__(self, aggregation: Any) -> None:
        aggregation.aggregate(self.measurement, self.sample)


def _public(instrument: Instrument, value: float, attributes: object, context: Context) -> None:
    if isinstance(instrument, Counter):
        instrument.add(value, cast(Mapping[str, AttributeValue], attributes), context)
    else:
        instrument.record(value, cast(Mapping[str, AttributeValue], attributes), context)


def _measurement(value: float, now: int, real: object, context: Context, cleaned: object) -> object:
    # Built as the SDK builds it, with the attributes it would have cleaned to these.
    measurement = _new_measurement(value, now, real, context, None)
    object.__setattr__(measurement, "attributes", cleaned)
    return measurement


def _explicit(aggregation: object) -> bool:
    """Whether `aggregation` is the SDK's explicit-bucket histogram with the fields read here;
    its class is remembered (an SDK version has one layout per class)."""
    if type(aggregation) is not cast(_Internals, _SDK).explicit or not all(
        hasattr(aggregation, name) for name in _EXPLICIT_FIELDS
    ):
        return False
    _EXPLICIT_KINDS.add(type(aggregation))
    return True


def _add_all(
    aggregation: object,
    values: Sequence[float],
    real: object,
    context: Context,
    cleaned: object,
) -> None:
    """`aggregation.aggregate` for each value with no exemplar, in fewer steps if it is an
    explicit-bucket histogram's."""
    kind = type(aggregation)
    if kind not in _EXPLICIT_KINDS and not _explicit(aggregation):
        # Another aggregation (a view's exponential histogram, a drop): its own step each.
        aggregate = cast(Any, aggregation).aggregate
        for value in values:
            aggregate(_measurement(value, time_ns(), real, context, cleaned), False)
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
