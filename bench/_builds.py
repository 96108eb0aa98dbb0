"""What one call of each configuration does: `build(name, base_url)` returns its `Bench`.

Every instrumented configuration gets the same SDK providers (`_telemetry.providers`) and
content capture on: ours by `capture_content=True`, the peers by the variables `WORKER_ENV`
sets in every worker before anything is imported (each peer reads its own when instrumented:
OpenTelemetry GenAI `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`, whose
`SPAN_AND_EVENT` also turns its events on; Traceloop `TRACELOOP_TRACE_CONTENT`; OpenInference
hides nothing unless an `OPENINFERENCE_HIDE_*` variable says so). The peers are imported with
`importlib` (they are optional; the bench venv has them) and instrumented with explicit
providers, as `Instrumentor().instrument(tracer_provider=..., meter_provider=...,
logger_provider=...)`.
"""

from __future__ import annotations

import gc
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _configs import BY_NAME, Config
from _telemetry import Providers, providers

__all__ = ["MESSAGES", "PROMPT", "WORKER_ENV", "Bench", "build"]

PROMPT = "How are you today?"
MESSAGES = [{"role": "user", "content": PROMPT}]
SDK_ARGS: dict[str, Any] = {"logprobs": True, "top_logprobs": 3}
STREAM_ARGS: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
# Content capture on for every instrumentation (see the module's docstring).
WORKER_ENV = {
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
    "TRACELOOP_TRACE_CONTENT": "true",
}
_PEER_MODULES = {
    "genai": "opentelemetry.instrumentation.genai.openai",
    "traceloop": "opentelemetry.instrumentation.openai",
    "openinference": "openinference.instrumentation.openai",
}


def _nothing() -> None:
    pass


@dataclass
class Bench:
    """One configuration's call, `run(n)`, and what it keeps, `keep(n)`."""

    run: Callable[[int], object]
    keep: Callable[[int], object]
    flush: Callable[[], None] = _nothing
    timed: Callable[[int], float] | None = None  # measures its own CPU (ours_agg_only)
    telemetry: Providers | None = None


def _instrument_peer(key: str, telemetry: Providers) -> None:
    module: Any = importlib.import_module(_PEER_MODULES[key])
    module.OpenAIInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )


def _raw(config: Config, client: Any) -> Bench:
    """The bare SDK's calls; for `raw_*`, with the client (ours) or the SDK (peers) instrumented."""
    telemetry = None
    if config.group == "raw":
        telemetry = providers()
        key = config.name.split("_")[1]
        if key == "ours":
            from logprobscope.instrument import instrument_openai

            instrument_openai(
                client,
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                capture_content=True,
                events="tokens",
            )
        else:
            _instrument_peer(key, telemetry)
    create = client.chat.completions.create
    flush = telemetry.flush if telemetry else _nothing

    if config.mode == "create":

        def call(n: int) -> object:
            return create(model=f"bench-{n}", messages=MESSAGES, **SDK_ARGS)

        return Bench(call, call, flush, telemetry=telemetry)

    def stream(n: int) -> object:
        for _ in create(model=f"bench-{n}", messages=MESSAGES, **STREAM_ARGS, **SDK_ARGS):
            pass
        return None

    def keep(n: int) -> object:
        # The SDK has no aggregation: keeping a streamed answer means keeping its chunks.
        return list(create(model=f"bench-{n}", messages=MESSAGES, **STREAM_ARGS, **SDK_ARGS))

    return Bench(stream, keep, flush, telemetry=telemetry)


def _model(config: Config, client: Any) -> Bench:
    """logprobscope's `ChatOpenAI`, with or without the OpenTelemetry handler."""
    from logprobscope import ChatOpenAI

    name = config.name
    telemetry = None
    callbacks: list[Any] = []
    if name.startswith("otel") or name == "ours_invoke_otel":
        from logprobscope.otel import OpenTelemetryCallbackHandler

        telemetry = providers(sampled="unsampled" not in name)
        callbacks = [
            OpenTelemetryCallbackHandler(
                events="batched" if "batched" in name else "tokens",
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                capture_content=True,
            )
        ]
    flush = telemetry.flush if telemetry else _nothing
    models: dict[int, ChatOpenAI] = {}

    def model(n: int) -> ChatOpenAI:
        m = models.get(n)
        if m is None:
            m = models[n] = ChatOpenAI(
                model=f"bench-{n}",
                logprobs=True,
                top_logprobs=3,
                client=client,
                callbacks=callbacks,
            )
        return m

    def stream(n: int) -> object:
        for _ in model(n).stream(PROMPT):
            pass
        return None

    def stream_agg(n: int) -> object:
        agg: Any = None
        for chunk in model(n).stream(PROMPT):
            agg = chunk if agg is None else agg + chunk
        return agg

    def invoke(n: int) -> object:
        return model(n).invoke(PROMPT)

    if config.mode == "create":
        return Bench(invoke, invoke, flush, telemetry=telemetry)
    if name == "ours_agg":
        return Bench(stream_agg, stream_agg, flush, telemetry=telemetry)
    if name == "ours_agg_only":

        def agg_only(n: int) -> float:
            chunks: list[Any] = list(model(n).stream(PROMPT))
            gc.collect()
            t0 = time.process_time()
            agg = chunks[0]
            for chunk in chunks[1:]:
                agg = agg + chunk
            t1 = time.process_time()
            del agg, chunks
            return t1 - t0

        return Bench(stream_agg, stream_agg, flush, timed=agg_only, telemetry=telemetry)
    # ours_stream and the otel stream configurations drop the chunks; for the memory probe
    # (`keep`) they aggregate, so that their excess over `ours_agg` is what the handler keeps.
    return Bench(stream, stream_agg, flush, telemetry=telemetry)


def _langchain(config: Config, base_url: str) -> Bench:
    """langchain-openai's `ChatOpenAI`, alone, with our handler, or under the official one."""
    from langchain_openai import ChatOpenAI

    name = config.name
    telemetry = None
    callbacks: list[Any] | None = None
    if "_ours_" in name:
        from logprobscope.langchain import LogprobsCallbackHandler

        telemetry = providers()
        callbacks = [
            LogprobsCallbackHandler(
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                capture_content=True,
                events="tokens",
            )
        ]
    elif "_genai_" in name:
        telemetry = providers()
        module: Any = importlib.import_module("opentelemetry.instrumentation.genai.langchain")
        module.LangChainInstrumentor().instrument(
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            logger_provider=telemetry.logger_provider,
        )
    flush = telemetry.flush if telemetry else _nothing
    models: dict[int, Any] = {}

    def model(n: int) -> Any:
        m = models.get(n)
        if m is None:
            m = models[n] = ChatOpenAI(
                model=f"bench-{n}",
                base_url=base_url,
                api_key="bench",  # type: ignore[arg-type]
                max_retries=0,
                logprobs=True,
                top_logprobs=3,
                stream_usage=True,
                callbacks=callbacks,
            )
        return m

    def stream_agg(n: int) -> object:
        agg: Any = None
        for chunk in model(n).stream(PROMPT):
            agg = chunk if agg is None else agg + chunk
        return agg

    def invoke(n: int) -> object:
        return model(n).invoke(PROMPT)

    call = invoke if config.mode == "create" else stream_agg
    return Bench(call, call, flush, telemetry=telemetry)


def build(name: str, base_url: str) -> Bench:
    """The configuration `name`'s calls against the bench server at `base_url`."""
    config = BY_NAME.get(name)
    if config is None:
        raise SystemExit(f"unknown configuration {name!r}")
    if config.group == "langchain":
        return _langchain(config, base_url)
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    if config.group in ("sdk", "raw"):
        return _raw(config, client)
    return _model(config, client)
