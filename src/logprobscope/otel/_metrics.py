"""The metrics of TELEMETRY.md: instruments created once per meter provider, and one call's
observations (per token and per chunk as they come, per call at its end)."""

from __future__ import annotations

import math
import threading
import time
import weakref
from array import array
from collections.abc import Sequence
from typing import cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider
from opentelemetry.util.types import AttributeValue

from .. import _contract as n
from .._figures import LogprobSummary, probability
from .._version import __version__
from ._attributes import error_type
from ._bulk import AttributeSet
from ._input import ResponseFacts

__all__ = ["NO_EXEMPLAR_CONTEXT", "CallMetrics", "Instruments", "instruments_for"]

# A context whose span is invalid: no exemplar is sampled from it. (An empty Context would
# not do: the SDK takes a falsy context as "none given" and uses the current one.)
NO_EXEMPLAR_CONTEXT = trace.set_span_in_context(trace.INVALID_SPAN)


class Instruments:
    """The histograms and counter, created once per meter provider."""

    __slots__ = (
        "_sets",
        "token_usage",
        "duration",
        "time_to_first_chunk",
        "time_per_output_chunk",
        "token_probability",
        "perplexity",
        "min_probability",
        "entropy",
        "low_confidence",
    )

    def __init__(self, meter: Meter) -> None:
        self._sets: dict[tuple[object, ...], AttributeSet] = {}

        def histogram(
            name: str, unit: str, description: str, buckets: Sequence[float]
        ) -> Histogram:
            return meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=list(buckets),
            )

        self.token_usage = histogram(
            n.GEN_AI_CLIENT_TOKEN_USAGE,
            n.UNIT_TOKEN,
            "Number of input and output tokens used.",
            n.TOKEN_USAGE_BUCKETS,
        )
        self.duration = histogram(
            n.GEN_AI_CLIENT_OPERATION_DURATION,
            n.UNIT_SECONDS,
            "GenAI operation duration.",
            n.DURATION_BUCKETS,
        )
        self.time_to_first_chunk = histogram(
            n.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            n.UNIT_SECONDS,
            "Time to receive the first chunk of a streamed response.",
            n.CHUNK_TIME_BUCKETS,
        )
        self.time_per_output_chunk = histogram(
            n.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
            n.UNIT_SECONDS,
            "Time between consecutive chunks of a streamed response.",
            n.CHUNK_TIME_BUCKETS,
        )
        self.token_probability = histogram(
            n.METRIC_TOKEN_PROBABILITY,
            n.UNIT_RATIO,
            "Probability of each generated token (exp of its logprob).",
            n.PROBABILITY_BUCKETS,
        )
        self.perplexity = histogram(
            n.METRIC_RESPONSE_PERPLEXITY,
            n.UNIT_RATIO,
            "Perplexity of each response, exp(-mean logprob).",
            n.PERPLEXITY_BUCKETS,
        )
        self.min_probability = histogram(
            n.METRIC_RESPONSE_MIN_PROBABILITY,
            n.UNIT_RATIO,
            "Probability of the least likely token of each response.",
            n.PROBABILITY_BUCKETS,
        )
        self.entropy = histogram(
            n.METRIC_RESPONSE_ENTROPY,
            n.UNIT_NAT,
            "Mean entropy over the returned top alternatives of each response's tokens.",
            n.ENTROPY_BUCKETS,
        )
        self.low_confidence: Counter = meter.create_counter(
            n.METRIC_TOKEN_LOW_CONFIDENCE,
            unit=n.UNIT_TOKEN,
            description="Generated tokens with a probability below the low-confidence threshold.",
        )

    def attribute_set(self, attributes: dict[str, AttributeValue]) -> AttributeSet:
        """`attributes` prepared for these instruments, shared by the calls that use them."""
        # With the values' types: the SDK tells True, 1 and 1.0 apart, so must the key.
        key = (*attributes.items(), *map(type, attributes.values()))
        try:
            found = self._sets.get(key)
        except TypeError:  # an unhashable value: prepared for this call only
            return AttributeSet(attributes)
        if found is None:
            if len(self._sets) >= _MAX_SETS:  # a few sets in practice; never unbounded
                self._sets.clear()
            found = self._sets[key] = AttributeSet(attributes)
        return found


FLUSH_AT = 512
"""Per-token or per-chunk observations held during a stream before they are recorded."""

_MAX_SETS = 256

_instrument_cache: weakref.WeakKeyDictionary[MeterProvider, Instruments] = (
    weakref.WeakKeyDictionary()
)
_instrument_lock = threading.Lock()


def instruments_for(provider: MeterProvider) -> Instruments:
    """The instruments of `provider`'s meter, created on first use."""
    with _instrument_lock:
        try:
            found = _instrument_cache.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced: no caching
            return Instruments(provider.get_meter(n.SCOPE_NAME, __version__))
        if found is None:
            found = Instruments(provider.get_meter(n.SCOPE_NAME, __version__))
            _instrument_cache[provider] = found
        return found


class CallMetrics:
    """One call's metric observations, and the chunk timing they and the span share.

    Per-token probabilities (appended to `probabilities` by whoever reads the tokens) and
    per-chunk gaps are held in typed arrays and recorded in batches (`AttributeSet.record_many`)
    once the response model, a metric attribute, is known: during a stream whenever
    `FLUSH_AT` of them are waiting (so a long stream's observations reach the SDK while it
    runs, and what waits stays small), and the rest at the end. Per-call observations are
    recorded by `record_end`.

    Args:
        instruments: where to record; None records nothing (a disabled call).
        attributes: the call's metric attributes, the response model aside.
        context: the context of the per-call observations (exemplars link to the span).
        start_perf: the call's start on the `perf_counter_ns` clock.
        owned: False for a call recorded on another instrumentation's span, whose owner
            records the `gen_ai.client.*` metrics: only the `logprobs.*` ones are recorded.
    """

    __slots__ = (
        "_instruments",
        "_attrs",
        "_model_attrs",
        "_context",
        "probabilities",
        "_chunk_times",
        "start_perf",
        "first_chunk_perf",
        "_last_chunk_perf",
        "_owned",
    )

    def __init__(
        self,
        instruments: Instruments | None,
        attributes: dict[str, AttributeValue],
        context: Context,
        start_perf: int,
        *,
        owned: bool = True,
    ) -> None:
        self._owned = owned
        self._instruments = instruments
        self._attrs = self._prepare(attributes)
        self._model_attrs: tuple[str, AttributeSet] | None = None
        self._context = context
        self.probabilities: array[float] = array("d")
        self._chunk_times: array[float] = array("d")
        self.start_perf = start_perf
        self.first_chunk_perf = 0
        self._last_chunk_perf = 0

    def chunk(self) -> None:
        """A streamed chunk arrived now (time to first chunk, time per output chunk)."""
        now = time.perf_counter_ns()
        last = self._last_chunk_perf
        if last:
            self._chunk_times.append((now - last) / 1e9)
        else:
            self.first_chunk_perf = now
        self._last_chunk_perf = now

    def time_to_first_chunk(self) -> float | None:
        """Seconds from the start to the first chunk; None before any chunk."""
        first = self.first_chunk_perf
        return (first - self.start_perf) / 1e9 if first else None

    def observe(self, model: str | None) -> None:
        """Record what came so far once `FLUSH_AT` observations wait and the model is known."""
        if model is not None and (
            len(self.probabilities) >= FLUSH_AT or len(self._chunk_times) >= FLUSH_AT
        ):
            self._flush(model)

    def _prepare(self, attributes: dict[str, AttributeValue]) -> AttributeSet:
        instruments = self._instruments
        if instruments is None:
            return AttributeSet(attributes)
        return instruments.attribute_set(attributes)

    def _attributes(self, model: str | None) -> AttributeSet:
        if model is None:
            return self._attrs
        cached = self._model_attrs
        if cached is None or cached[0] != model:
            cached = self._model_attrs = (
                model,
                self._prepare({**self._attrs.attributes, n.GEN_AI_RESPONSE_MODEL: model}),
            )
        return cached[1]

    def _flush(self, model: str | None) -> None:
        instruments = self._instruments
        if instruments is None:
            return
        attrs = self._attributes(model)
        # Per-token and per-chunk observations carry no exemplars: offering each one to
        # the exemplar reservoir costs ~20% of a record() and the per-call histograms
        # (duration, perplexity, min probability, entropy) already link to the span.
        # They go in together (see `_bulk`): one SDK lookup per batch instead of one per value.
        context = NO_EXEMPLAR_CONTEXT
        probabilities = self.probabilities
        if probabilities:
            self.probabilities = array("d")
            attrs.record_many(instruments.token_probability, probabilities, context)
        times = self._chunk_times
        if times:
            self._chunk_times = array("d")
            if self._owned:
                attrs.record_many(instruments.time_per_output_chunk, times, context)

    def record_end(
        self,
        summary: LogprobSummary,
        response: ResponseFacts,
        *,
        stream: bool,
        error: BaseException | None,
        end_perf: int,
    ) -> None:
        """Record the call's observations: duration, usage, time to first chunk, the rest
        of the per-token ones, and the per-response logprob figures."""
        instruments = self._instruments
        if instruments is None:
            return
        attrs = self._attributes(response.model)
        context = self._context
        if not self._owned:
            self._flush(response.model)
            _record_figures(instruments, summary, attrs, context)
            return
        duration_attrs = attrs
        per_call: list[tuple[Histogram | Counter, float]] = []
        duration = (end_perf - self.start_perf) / 1e9
        if error is None:
            per_call.append((instruments.duration, duration))
        else:
            duration_attrs = self._prepare({**attrs.attributes, n.ERROR_TYPE: error_type(error)})
            duration_attrs.record(instruments.duration, duration, context)
        for kind, tokens in (
            (n.TOKEN_TYPE_INPUT, response.input_tokens),
            (n.TOKEN_TYPE_OUTPUT, response.output_tokens),
        ):
            if tokens is not None:
                usage = self._prepare({**attrs.attributes, n.GEN_AI_TOKEN_TYPE: kind})
                usage.record(instruments.token_usage, tokens, context)
        first_chunk = self.time_to_first_chunk()
        if stream and first_chunk is not None:
            per_call.append((instruments.time_to_first_chunk, first_chunk))
        self._flush(response.model)
        _record_figures(instruments, summary, attrs, context, per_call)


def _record_figures(
    instruments: Instruments,
    summary: LogprobSummary,
    attrs: AttributeSet,
    context: Context,
    observations: list[tuple[Histogram | Counter, float]] | None = None,
) -> None:
    """The per-response logprob figures (after `observations` with the same attributes)."""
    out = [] if observations is None else observations
    if summary.sum is not None:
        # Histograms take finite values only: an infinite perplexity (a -inf logprob
        # or an underflowing mean) stays on the span and is not observed here.
        perplexity = cast(float, summary.perplexity)
        if math.isfinite(perplexity):
            out.append((instruments.perplexity, perplexity))
        min_p = probability(cast(float, summary.min))
        if math.isfinite(min_p):
            out.append((instruments.min_probability, min_p))
        if summary.entropy_mean is not None and math.isfinite(summary.entropy_mean):
            out.append((instruments.entropy, max(0.0, summary.entropy_mean)))
        out.append((instruments.low_confidence, summary.low_confidence_count))
    attrs.record_all(out, context)
