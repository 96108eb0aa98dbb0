"""`LangChainInstrumentor`: our LangChain handler on every callback manager, with no code."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

# The module says `# type: ignore` at its top: mypy sees none of its names.
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from .._patching import remove_layer
from ._options import OPTIONS, telemetry_from

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackManager

    from ..langchain import LogprobsCallbackHandler

__all__ = ["LangChainInstrumentor"]

logger = logging.getLogger("logprobscope")

_DEPENDENCIES = ("langchain-core >= 0.3",)
_LOCK = threading.Lock()


def _handler_class() -> type[LogprobsCallbackHandler]:
    from ..langchain import LogprobsCallbackHandler

    class _InstrumentorHandler(LogprobsCallbackHandler):
        """The instrumentor's handler: starts no run once the instrumentor is undone."""

        enabled = True

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            if self.enabled:
                super().on_chat_model_start(*args, **kwargs)

    return _InstrumentorHandler


def _attach(manager: BaseCallbackManager, handler: LogprobsCallbackHandler) -> None:
    """Put `handler` first in `manager`'s handlers, unless a logprob handler is there already.

    First, so that where another instrumentation's handler records the same run, ours sees
    the run before that one ends its span (a sync manager calls handlers in list order). New
    lists: a manager's lists may be the caller's own objects.
    """
    from ..langchain import LogprobsCallbackHandler

    try:
        present = (*manager.handlers, *manager.inheritable_handlers)
        if any(isinstance(h, LogprobsCallbackHandler) for h in present):
            return  # the user's own handler, or ours inherited from a parent manager
        manager.handlers = [handler, *manager.handlers]
        manager.inheritable_handlers = [handler, *manager.inheritable_handlers]
    except Exception:  # an unusual manager: LangChain goes on without us
        logger.debug("adding the logprob handler to a callback manager failed", exc_info=True)


def _patched_init(
    original: Callable[..., None], handler: LogprobsCallbackHandler
) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: BaseCallbackManager, *args: Any, **kwargs: Any) -> None:
        # Bound through the descriptor: another instrumentation's proxy under ours (wrapt)
        # needs the instance it is called for.
        original.__get__(self, type(self))(*args, **kwargs)
        if handler.enabled:  # type: ignore[attr-defined]
            _attach(self, handler)

    return __init__


def _patched_add_handler(
    original: Callable[..., None], handler: LogprobsCallbackHandler
) -> Callable[..., None]:
    # A model's or a call's own callbacks are added after the manager is made: a logprob
    # handler of the user's among them replaces ours, which would record the same runs.
    from ..langchain import LogprobsCallbackHandler

    @functools.wraps(original)
    def add_handler(self: BaseCallbackManager, new: Any, *args: Any, **kwargs: Any) -> None:
        original.__get__(self, type(self))(new, *args, **kwargs)
        if new is not handler and isinstance(new, LogprobsCallbackHandler):
            try:
                self.handlers = [h for h in self.handlers if h is not handler]
                self.inheritable_handlers = [
                    h for h in self.inheritable_handlers if h is not handler
                ]
            except Exception:
                logger.debug("removing the instrumentor's handler failed", exc_info=True)

    return add_handler


_PATCHES = (("__init__", _patched_init), ("add_handler", _patched_add_handler))


class LangChainInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Logprob telemetry for every LangChain chat model run, with no handler passed anywhere.

    `LangChainInstrumentor().instrument()` adds one `logprobscope.langchain.
    LogprobsCallbackHandler` to every LangChain callback manager made from then on (as an
    inheritable handler, so chains and agents pass it to their models), unless a logprob
    handler is already there. Each chat model run then emits what that handler emits: a
    `chat {model}` span with logprob events and summary attributes, and the metrics.
    `opentelemetry-instrument` calls it on its own through the `opentelemetry_instrumentor`
    entry point `logprobscope_langchain`; list that name in
    `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS` to leave it out. Without `langchain-core`
    installed it does nothing.

    `instrument(**options)` takes `telemetry`, `tracer_provider`, `meter_provider`,
    `capture_content`, `events` and `low_confidence_threshold` (see
    `LogprobsCallbackHandler`); without them the global providers and the environment
    decide, as for `OpenAIInstrumentor`. `uninstrument()` stops adding the handler; managers
    made before keep it, but it starts no new run (runs already started end as usual).
    """

    _handler: LogprobsCallbackHandler | None = None
    # (name, our layer, what it calls) of each patched method of BaseCallbackManager
    _patches: tuple[tuple[str, Callable[..., None], Callable[..., None]], ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        """The `langchain-core` versions this instruments."""
        return _DEPENDENCIES

    @property
    def handler(self) -> LogprobsCallbackHandler | None:
        """The handler added to every callback manager while instrumented, else None."""
        return self._handler

    def _instrument(self, **kwargs: Any) -> None:
        try:
            from langchain_core.callbacks import BaseCallbackManager
        except ImportError:  # opentelemetry-instrument loads us without checking
            logger.debug("langchain-core is not installed: nothing to instrument")
            return
        telemetry = telemetry_from({k: v for k, v in kwargs.items() if k in OPTIONS})
        handler = _handler_class()(telemetry=telemetry)
        with _LOCK:
            patches = []
            for name, patch in _PATCHES:
                inner = BaseCallbackManager.__dict__[name]
                ours = patch(inner, handler)
                setattr(BaseCallbackManager, name, ours)
                patches.append((name, ours, inner))
            self._patches = tuple(patches)
            self._handler = handler

    def _uninstrument(self, **kwargs: Any) -> None:
        try:
            from langchain_core.callbacks import BaseCallbackManager
        except ImportError:
            return
        with _LOCK:
            handler, self._handler = self._handler, None
            if handler is not None:
                # Where our layer cannot be taken out (under another's plain wrapper), it
                # stays and adds nothing: the handler is off.
                handler.enabled = False  # type: ignore[attr-defined]
            patches, self._patches = self._patches, ()
            for name, ours, inner in patches:
                remove_layer(BaseCallbackManager, name, ours, inner)
