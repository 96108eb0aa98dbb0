"""Messages in and out: typed, frozen pydantic models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._construct import construct, construct_fields_set
from ._logprobs import ChoiceLogprobs, concat_optional

__all__ = [
    "AIMessage",
    "AIMessageChunk",
    "BaseMessage",
    "DeveloperMessage",
    "HumanMessage",
    "MessageInput",
    "ResponseMetadata",
    "SystemMessage",
    "ToolMessage",
    "UsageMetadata",
    "coerce_messages",
]

_FROZEN = ConfigDict(frozen=True, ser_json_inf_nan="constants")  # see _logprobs._CONFIG

ContentPart = dict[str, object]


class UsageMetadata(BaseModel):
    """Token counts of one call, as the server reported them."""

    model_config = _FROZEN

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class ResponseMetadata(BaseModel):
    """What the server said about the answer, beside its text.

    `incomplete` is True only for a stream that ended before the server's end of stream
    (left early, closed, garbage-collected, or cut by an error).
    """

    model_config = _FROZEN

    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    model_name: str | None = None
    id: str | None = None
    system_fingerprint: str | None = None
    incomplete: bool = False

    def __add__(self, other: ResponseMetadata) -> ResponseMetadata:
        """Concatenate the logprobs; keep the latest non-empty value of every other field."""
        if not isinstance(other, ResponseMetadata):
            return NotImplemented
        mine = self.__dict__
        theirs = other.__dict__
        logprobs = concat_optional(mine["logprobs"], theirs["logprobs"])
        # `construct`, not `model_construct`: this runs once per `agg + chunk` (hot path).
        return construct(
            ResponseMetadata,
            {
                "logprobs": logprobs,
                "finish_reason": theirs["finish_reason"] or mine["finish_reason"],
                "model_name": theirs["model_name"] or mine["model_name"],
                "id": theirs["id"] or mine["id"],
                "system_fingerprint": theirs["system_fingerprint"] or mine["system_fingerprint"],
                "incomplete": theirs["incomplete"],
            },
        )


class BaseMessage(BaseModel):
    """A chat message; `role` is fixed by the subclass."""

    model_config = _FROZEN

    role: str
    content: str | list[ContentPart] = ""

    def to_openai(self) -> dict[str, object]:
        """The message as the Chat Completions API takes it."""
        return {"role": self.role, "content": self.content}


class SystemMessage(BaseMessage):
    """System instructions."""

    role: Literal["system"] = "system"


class DeveloperMessage(BaseMessage):
    """Developer instructions (the newer name of the system role at OpenAI)."""

    role: Literal["developer"] = "developer"


class HumanMessage(BaseMessage):
    """A user's message."""

    role: Literal["user"] = "user"


class ToolMessage(BaseMessage):
    """The result of a tool call."""

    role: Literal["tool"] = "tool"
    tool_call_id: str

    def to_openai(self) -> dict[str, object]:
        """The message as the Chat Completions API takes it."""
        return {"role": "tool", "content": self.content, "tool_call_id": self.tool_call_id}


class AIMessage(BaseMessage):
    """The model's answer, with its logprobs in `response_metadata.logprobs.content`."""

    role: Literal["assistant"] = "assistant"
    content: str = ""
    response_metadata: ResponseMetadata = Field(default_factory=ResponseMetadata)
    usage_metadata: UsageMetadata | None = None


class StreamText(list[str]):
    """A stream's text pieces: appended to by that stream only, never by `+`."""

    __slots__ = ()


class _TextSlice:
    """Content not joined yet: pieces[start:stop] of a shared, append-only list."""

    __slots__ = ("pieces", "start", "stop")

    def __init__(self, pieces: list[str], start: int, stop: int) -> None:
        self.pieces = pieces
        self.start = start
        self.stop = stop


_instance_dict = BaseModel.__dict__["__dict__"]  # the slot descriptor of every model's dict
_get_dict = _instance_dict.__get__
_set_dict = _instance_dict.__set__


def _joined(fields: dict[str, object]) -> dict[str, object]:
    value = fields["content"]
    if type(value) is _TextSlice:
        fields["content"] = "".join(value.pieces[value.start : value.stop])
    return fields


class _ChunkDict:
    """`chunk.__dict__`, with pending text joined first."""

    __slots__ = ()

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, object]:
        if obj is None:
            raise AttributeError("__dict__")
        return _joined(_get_dict(obj))

    def __set__(self, obj: object, value: dict[str, object]) -> None:
        _set_dict(obj, value)  # copy, deepcopy and unpickling set it


class _ChunkContent:
    """`chunk.content`, the text joined on first read (a chunk of a stream holds a slice)."""

    __slots__ = ()

    def __get__(self, obj: object, owner: type | None = None) -> object:
        if obj is None:
            raise AttributeError("content")  # like any pydantic field on the class
        fields = _get_dict(obj)
        value = fields["content"]
        if type(value) is _TextSlice:
            value = fields["content"] = "".join(value.pieces[value.start : value.stop])
        return value

    def __set__(self, obj: object, value: object) -> None:
        # Only `object.__setattr__` gets here (pydantic's __setattr__ refuses frozen
        # models first): it wrote into the instance dict, and still does.
        _get_dict(obj)["content"] = value


class AIMessageChunk(AIMessage):
    """A piece of a streamed answer; `agg = agg + chunk` adds them up.

    Adding the chunks of one stream costs O(1) each: content and logprobs stay in the
    stream's shared buffers and are joined or built only when read.
    """

    __slots__ = ("_text",)

    # Every reader of the fields (attribute access, model_dump, repr, ==, copy, pickle) goes
    # through `content` or `__dict__`: both are data descriptors that join pending text
    # there, once (`content` is set below the class). Other attributes are read at C speed.
    __dict__ = _ChunkDict()

    def _slice(self) -> _TextSlice | None:
        return _slice_of(self)

    def __add__(self, other: AIMessageChunk) -> AIMessageChunk:
        """Concatenate content and logprobs; keep the latest metadata and usage."""
        if not isinstance(other, AIMessageChunk):
            return NotImplemented
        mine = _slice_of(self)
        theirs = _slice_of(other)
        if mine is not None and theirs is not None and mine.pieces is theirs.pieces:
            if mine.stop == theirs.start:
                text = _TextSlice(mine.pieces, mine.start, theirs.stop)
            elif mine.stop == len(mine.pieces) and type(mine.pieces) is not StreamText:
                mine.pieces.extend(theirs.pieces[theirs.start : theirs.stop])
                text = _TextSlice(mine.pieces, mine.start, len(mine.pieces))
            else:
                text = _fork(self, other)
        elif (
            mine is not None
            and mine.stop == len(mine.pieces)
            and type(mine.pieces) is not StreamText
        ):
            mine.pieces.append(other.content)
            text = _TextSlice(mine.pieces, mine.start, len(mine.pieces))
        else:
            text = _fork(self, other)
        fields = _get_dict(self)  # the raw dicts: reading them must not join the text
        other_fields = _get_dict(other)
        usage = other_fields["usage_metadata"] or fields["usage_metadata"]
        return make_chunk(
            text, fields["response_metadata"] + other_fields["response_metadata"], usage
        )

    def to_message(self) -> AIMessage:
        """The same answer as a plain `AIMessage`."""
        return AIMessage.model_construct(
            content=self.content,
            response_metadata=self.response_metadata,
            usage_metadata=self.usage_metadata,
        )


def _fork(left: AIMessageChunk, right: AIMessageChunk) -> _TextSlice:
    pieces = [left.content, right.content]
    return _TextSlice(pieces, 0, 2)


_get = object.__getattribute__


def _slice_of(chunk: AIMessageChunk) -> _TextSlice | None:
    try:
        text: _TextSlice = _get(chunk, "_text")
    except AttributeError:  # built by the user, copied or unpickled: no shared buffer
        return None
    return text


_set_text = AIMessageChunk.__dict__["_text"].__set__
# Set on the class after pydantic built it: in the class body it would be a field.
type.__setattr__(AIMessageChunk, "content", _ChunkContent())
_CHUNK_FIELDS_SET = frozenset({"content", "response_metadata", "usage_metadata"})


def make_chunk(
    text: _TextSlice, metadata: ResponseMetadata, usage: UsageMetadata | None
) -> AIMessageChunk:
    """Build a chunk without validation (its parts are already typed)."""
    chunk = construct_fields_set(
        AIMessageChunk,
        {
            "role": "assistant",
            "content": text,
            "response_metadata": metadata,
            "usage_metadata": usage,
        },
        set(_CHUNK_FIELDS_SET),
    )
    _set_text(chunk, text)
    return chunk


MessageInput = str | Sequence[BaseMessage | Mapping[str, object]]

_ROLES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "developer": DeveloperMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
    "tool": ToolMessage,
}


def coerce_messages(value: object) -> list[BaseMessage]:
    """Turn a prompt (a string, or messages and role/content dicts) into typed messages.

    Raises:
        TypeError: the input is neither a string nor a sequence of messages.
        ValueError: an unknown role, or an empty list.
    """
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, BaseMessage):
        return [value]
    if not isinstance(value, Sequence):
        raise TypeError(f"input must be a string or a list of messages, not {type(value).__name__}")
    if not value:
        raise ValueError("input has no messages")
    out: list[BaseMessage] = []
    for i, item in enumerate(value):
        if isinstance(item, BaseMessage):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise TypeError(
                f"message {i} must be a message or a dict with 'role' and 'content', "
                f"not {type(item).__name__}"
            )
        role = item.get("role")
        cls = _ROLES.get(role) if isinstance(role, str) else None
        if cls is None:
            raise ValueError(
                f"message {i} has role {role!r}; expected one of {', '.join(sorted(_ROLES))}"
            )
        fields = {k: v for k, v in item.items() if k != "role"}
        if cls is AIMessage and fields.get("content") is None:
            fields["content"] = ""
        out.append(cls.model_validate(fields))
    return out
