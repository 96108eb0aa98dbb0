"""logprobscope: how confident a language model was, token by token, in your telemetry."""

from __future__ import annotations

from ._callbacks import AsyncCallbackHandler, BaseCallbackHandler, Callbacks, Run
from ._fields import FieldAlternative, FieldConfidence, FieldReport, field_confidence
from ._logprobs import ChoiceLogprobs, TokenLogprob, TokenLogprobList, TopLogprob
from ._messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    DeveloperMessage,
    HumanMessage,
    MessageInput,
    ResponseMetadata,
    SystemMessage,
    ToolMessage,
    UsageMetadata,
)
from ._model import ChatOpenAI
from ._params import CallOptions
from ._stream import AsyncChatStream, ChatStream
from ._version import __version__

__all__ = [
    "AIMessage",
    "AIMessageChunk",
    "AsyncCallbackHandler",
    "AsyncChatStream",
    "BaseCallbackHandler",
    "BaseMessage",
    "CallOptions",
    "Callbacks",
    "ChatOpenAI",
    "ChatStream",
    "ChoiceLogprobs",
    "DeveloperMessage",
    "FieldAlternative",
    "FieldConfidence",
    "FieldReport",
    "HumanMessage",
    "MessageInput",
    "ResponseMetadata",
    "Run",
    "SystemMessage",
    "TokenLogprob",
    "TokenLogprobList",
    "ToolMessage",
    "TopLogprob",
    "UsageMetadata",
    "__version__",
    "field_confidence",
]
