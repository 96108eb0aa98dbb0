"""Zero-code logprob telemetry: OpenTelemetry instrumentors for `openai` and LangChain.

`opentelemetry-instrument python app.py` finds both through the `opentelemetry_instrumentor`
entry points `logprobscope_openai` and `logprobscope_langchain` and calls their
`instrument()`: with no change to the app, every `chat.completions.create` call of every
`openai` client, and every LangChain chat model run, emits the logprobscope telemetry
contract (docs/telemetry.md). The same in code:

```python
from logprobscope.instrumentation import LangChainInstrumentor, OpenAIInstrumentor

OpenAIInstrumentor().instrument()          # tracer_provider=, meter_provider=, events=, ...
LangChainInstrumentor().instrument()
```

Needs `pip install 'logprobscope[instrument]'` (`opentelemetry-instrumentation`, and
`opentelemetry-distro` for `opentelemetry-instrument` to configure exporters from `OTEL_*`).
"""

from __future__ import annotations

try:
    import opentelemetry.instrumentation.instrumentor  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "logprobscope.instrumentation needs opentelemetry-instrumentation; install the extra: "
        "pip install 'logprobscope[instrument]'"
    ) from exc

from ._langchain import LangChainInstrumentor
from ._openai import OpenAIInstrumentor

__all__ = ["LangChainInstrumentor", "OpenAIInstrumentor"]
