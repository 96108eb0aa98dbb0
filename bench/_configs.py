"""What the bench measures: every configuration, its base, its sizes and what it must record.

A configuration is one way of making a model call (the bare SDK, a raw client under an
instrumentation, LangChain with or without a handler, our model with or without the OTel
handler), streamed or not. Its cost is read against its own base at the same N: the added CPU
per chunk (streamed) or per token (not streamed) is `(config - base) / N`, from the medians
and from the mins separately.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import metadata
from typing import Literal

__all__ = [
    "BY_NAME",
    "CALLS",
    "CONFIGS",
    "Config",
    "Expect",
    "LANGCHAIN_GENAI",
    "PEERS",
    "Peer",
    "SIZES",
    "missing",
]

# Calls measured per process and size, after warm-up (tuned so that the full run of 3 rounds
# stays within about 15 minutes on 2 cores and the median of each process is stable).
CALLS: dict[int, int] = {1: 300, 50: 60, 200: 16, 2000: 6, 32000: 3}
SIZES = (1, 50, 200, 2000)
AGG_SIZES = (*SIZES, 32000)  # the aggregation target compares 32,000 with 2,000 chunks


@dataclass(frozen=True)
class Peer:
    """Another instrumentation measured next to ours (installed by the `bench` extra)."""

    key: str  # in configuration names: raw_<key>_stream
    label: str
    dist: str  # its distribution (the `bench` extra pins its version)


PEERS: tuple[Peer, ...] = (
    Peer("genai", "OpenTelemetry GenAI", "opentelemetry-instrumentation-genai-openai"),
    Peer("traceloop", "Traceloop", "opentelemetry-instrumentation-openai"),
    Peer("openinference", "OpenInference", "openinference-instrumentation-openai"),
)
LANGCHAIN_GENAI = Peer(
    "genai", "OpenTelemetry GenAI", "opentelemetry-instrumentation-genai-langchain"
)


@dataclass(frozen=True)
class Expect:
    """What a configuration's warm-up must have exported (so that it cannot look cheap by
    silently recording nothing)."""

    spans: bool = True  # one span per call at least
    content: bool = True  # the prompt's text somewhere in the spans or log records
    logprobs: bool = False  # the token logprobs (ours: summary attributes; others: the JSON)
    logs: bool = False  # log records (events through the Logs API)
    metrics: str = ""  # a metric whose name starts with this was exported
    nothing: bool = False  # a base: no telemetry at all


BASE = Expect(spans=False, content=False, nothing=True)
OURS = Expect(logprobs=True, metrics="logprobs.")


@dataclass(frozen=True)
class Config:
    """One configuration; `base` is what its added cost is read against (None: a base)."""

    name: str
    what: str
    mode: Literal["stream", "create"]  # per chunk or per token
    base: str | None
    group: Literal["sdk", "raw", "langchain", "model", "older"]
    expect: Expect
    sizes: tuple[int, ...] = SIZES
    needs: tuple[str, ...] = ()  # importable modules; the configuration is skipped without
    dists: tuple[str, ...] = ()  # installed distributions; likewise

    @property
    def ratio_to(self) -> str:
        """The bare SDK configuration of the same mode (ratios are taken against it)."""
        return "sdk_stream" if self.mode == "stream" else "sdk_create"

    @property
    def unit(self) -> str:
        return "chunk" if self.mode == "stream" else "token"


def _raw(peer: Peer | None, mode: Literal["stream", "create"]) -> Config:
    key = peer.key if peer else "ours"
    call = "`create(stream=True)` iterated" if mode == "stream" else "`create()`"
    dists: tuple[str, ...] = ()
    if peer is None:
        what = "raw client under `instrument_openai(client, capture_content=True)`"
        expect = OURS
    else:
        what = f"raw client under {peer.label}'s `OpenAIInstrumentor` (`{peer.dist}`)"
        expect = Expect(
            logprobs=peer.key == "openinference",
            logs=peer.key == "genai",
            metrics="" if peer.key == "openinference" else "gen_ai.",
        )
        dists = (peer.dist,)
    return Config(
        f"raw_{key}_{mode}", f"{what}, {call}", mode, f"sdk_{mode}", "raw", expect, dists=dists
    )


_LC = ("langchain_openai",)
_MODES: tuple[Literal["stream", "create"], ...] = ("stream", "create")
CONFIGS: tuple[Config, ...] = (
    Config(
        "sdk_stream", "bare openai SDK, `create(stream=True)` iterated", "stream", None, "sdk", BASE
    ),
    Config("sdk_create", "bare openai SDK, `create()`", "create", None, "sdk", BASE),
    *(_raw(peer, mode) for peer in (None, *PEERS) for mode in _MODES),
    Config(
        "langchain_stream",
        "LangChain `ChatOpenAI.stream`, `agg = agg + chunk`",
        "stream",
        None,
        "langchain",
        BASE,
        needs=_LC,
    ),
    Config(
        "langchain_invoke",
        "LangChain `ChatOpenAI.invoke`",
        "create",
        None,
        "langchain",
        BASE,
        needs=_LC,
    ),
    Config(
        "langchain_ours_stream",
        "`langchain_stream` + logprobscope's LangChain handler",
        "stream",
        "langchain_stream",
        "langchain",
        OURS,
        needs=_LC,
    ),
    Config(
        "langchain_ours_invoke",
        "`langchain_invoke` + logprobscope's LangChain handler",
        "create",
        "langchain_invoke",
        "langchain",
        OURS,
        needs=_LC,
    ),
    Config(
        "langchain_genai_stream",
        "`langchain_stream` under OpenTelemetry GenAI's `LangChainInstrumentor`",
        "stream",
        "langchain_stream",
        "langchain",
        Expect(logs=True, metrics="gen_ai."),
        needs=_LC,
        dists=(LANGCHAIN_GENAI.dist,),
    ),
    Config(
        "langchain_genai_invoke",
        "`langchain_invoke` under OpenTelemetry GenAI's `LangChainInstrumentor`",
        "create",
        "langchain_invoke",
        "langchain",
        Expect(logs=True, metrics="gen_ai."),
        needs=_LC,
        dists=(LANGCHAIN_GENAI.dist,),
    ),
    Config(
        "ours_stream", "logprobscope `ChatOpenAI.stream`, no handler", "stream", None, "model", BASE
    ),
    Config(
        "ours_invoke", "logprobscope `ChatOpenAI.invoke`, no handler", "create", None, "model", BASE
    ),
    Config(
        "otel_tokens",
        "`ours_stream` + `OpenTelemetryCallbackHandler` (events=tokens, sampled)",
        "stream",
        "ours_stream",
        "model",
        OURS,
    ),
    Config(
        "ours_invoke_otel",
        "`ours_invoke` + `OpenTelemetryCallbackHandler` (events=tokens, sampled)",
        "create",
        "ours_invoke",
        "model",
        OURS,
    ),
    Config(
        "ours_agg",
        "`ours_stream` with `agg = agg + chunk`",
        "stream",
        "ours_stream",
        "older",
        BASE,
        sizes=AGG_SIZES,
    ),
    Config(
        "ours_agg_only",
        "aggregation alone: `agg = agg + chunk` over a stream's chunks (timed loop only)",
        "stream",
        None,
        "older",
        BASE,
        sizes=AGG_SIZES,
    ),
    Config(
        "otel_batched",
        "`ours_stream` + `OpenTelemetryCallbackHandler` (events=batched, sampled)",
        "stream",
        "ours_stream",
        "older",
        OURS,
    ),
    Config(
        "otel_tokens_unsampled",
        "`ours_stream` + `OpenTelemetryCallbackHandler` "
        "(events=tokens, sampler ALWAYS_OFF: metrics only)",
        "stream",
        "ours_stream",
        "older",
        Expect(spans=False, content=False, metrics="logprobs."),
    ),
)
BY_NAME = {c.name: c for c in CONFIGS}


def missing(config: Config) -> str | None:
    """What the configuration needs and is not installed (None: it can run)."""
    for module in config.needs:
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None or spec.origin is None:
            return module
    for dist in config.dists:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            return dist
    return None
