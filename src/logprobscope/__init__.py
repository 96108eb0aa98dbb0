"""logprobscope: how confident a language model was, token by token, in your telemetry."""

from __future__ import annotations

from ._callbacks import AsyncCallbackHandler, BaseCallbackHandler, Callbacks, Run
from ._content import ContentPart, FilePart, ImagePart, InputAudioPart, RefusalPart, TextPart
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
from ._structured import ResponseFormat, StructuredChatModel, StructuredOutput
from ._toolcalls import InvalidToolCall, ToolCall, ToolCallChunk
from ._tools import ToolChoice, ToolLike
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
    "ContentPart",
    "DeveloperMessage",
    "FieldAlternative",
    "FieldConfidence",
    "FieldReport",
    "FilePart",
    "HumanMessage",
    "ImagePart",
    "InputAudioPart",
    "InvalidToolCall",
    "MessageInput",
    "RefusalPart",
    "ResponseFormat",
    "ResponseMetadata",
    "Run",
    "StructuredChatModel",
    "StructuredOutput",
    "SystemMessage",
    "TextPart",
    "TokenLogprob",
    "TokenLogprobList",
    "ToolCall",
    "ToolCallChunk",
    "ToolChoice",
    "ToolLike",
    "ToolMessage",
    "TopLogprob",
    "UsageMetadata",
    "__version__",
    "field_confidence",
]
