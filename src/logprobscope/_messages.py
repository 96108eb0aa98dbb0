"""Messages in and out: typed, frozen pydantic models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ._construct import construct, construct_fields_set
from ._content import ContentPart, check_parts
from ._fields import FieldReport, field_confidence
from ._lazy import (
    NO_TOOLS,
    ChunkContent,
    ChunkDict,
    ChunkLazy,
    Extras,
    Slice,
    StreamText,
    get_dict,
    joined,
)
from ._logprobs import ChoiceLogprobs, concat_optional
from ._schema_walk import SchemaInput
from ._toolcalls import (
    InvalidToolCall,
    ToolCall,
    ToolCallChunk,
    deltas_from_json,
    deltas_of,
    merge,
    parse_calls,
    tool_calls_to_openai,
)

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
_MESSAGE = ConfigDict(frozen=True, ser_json_inf_nan="constants", extra="forbid")


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
    """A chat message; `role` is fixed by the subclass.

    Every field is one the Chat Completions API takes on that role's messages; any other
    field is refused (`ValueError`) rather than silently not sent.
    """

    model_config = _MESSAGE

    role: str
    content: str | list[ContentPart] = ""

    @field_validator("content")
    @classmethod
    def _check_parts(cls, value: str | list[ContentPart]) -> str | list[ContentPart]:
        if isinstance(value, list):
            check_parts(value)
        return value

    def to_openai(self) -> dict[str, object]:
        """The message as the Chat Completions API takes it."""
        out: dict[str, object] = {"role": self.role, "content": self.content}
        name = self.__dict__.get("name")
        if name is not None:
            out["name"] = name
        return out


class SystemMessage(BaseMessage):
    """System instructions."""

    role: Literal["system"] = "system"
    name: str | None = None


class DeveloperMessage(BaseMessage):
    """Developer instructions (the newer name of the system role at OpenAI)."""

    role: Literal["developer"] = "developer"
    name: str | None = None


class HumanMessage(BaseMessage):
    """A user's message: text, or parts (text, image_url, input_audio, file)."""

    role: Literal["user"] = "user"
    name: str | None = None


class ToolMessage(BaseMessage):
    """The result of a tool call, answering the call whose id is `tool_call_id`."""

    role: Literal["tool"] = "tool"
    tool_call_id: str

    def to_openai(self) -> dict[str, object]:
        """The message as the Chat Completions API takes it."""
        return {"role": "tool", "content": self.content, "tool_call_id": self.tool_call_id}


class AIMessage(BaseMessage):
    """The model's answer, with its logprobs in `response_metadata.logprobs`.

    `content` is the text ("" when the model answered with tool calls or a refusal);
    `refusal` the refusal text, whose tokens are `response_metadata.logprobs.refusal`;
    `tool_calls` the calls whose arguments parse to a JSON object, `invalid_tool_calls`
    the others, kept with their raw text. `name`, `audio` (`{"id": ...}` of an earlier
    audio answer) and `function_call` (deprecated) are only sent, never filled by a call.
    """

    role: Literal["assistant"] = "assistant"
    content: str = ""
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = Field(default_factory=list)
    audio: dict[str, object] | None = None
    function_call: dict[str, object] | None = None
    response_metadata: ResponseMetadata = Field(default_factory=ResponseMetadata)
    usage_metadata: UsageMetadata | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_openai(cls, data: object) -> object:
        # The wire shape as OpenAI documents it: content null or absent, tool calls as
        # {"id", "type", "function": {"name", "arguments"}} (unparseable ones kept).
        if not isinstance(data, Mapping):
            return data
        fields = dict(data)
        content = fields.get("content")
        if "content" in fields and content is None:
            fields["content"] = ""
        elif isinstance(content, list):
            raise ValueError(
                "an assistant message's content must be a string: join its text parts "
                "(content parts are not supported on assistant messages here)"
            )
        calls = fields.get("tool_calls")
        if isinstance(calls, list) and any(_is_wire_call(c) for c in calls):
            valid: list[object] = []
            invalid: list[object] = list(fields.get("invalid_tool_calls") or [])
            for i, call in enumerate(calls):
                if _is_wire_call(call):
                    parsed, failed = parse_calls(deltas_from_json([call]))
                    valid.extend(c.model_copy(update={"index": i}) for c in parsed)
                    invalid.extend(c.model_copy(update={"index": i}) for c in failed)
                else:
                    valid.append(call)
            fields["tool_calls"] = valid
            fields["invalid_tool_calls"] = invalid
        return fields

    def to_openai(self) -> dict[str, object]:
        """The message as the Chat Completions API takes it.

        `content` is left out when it is empty and the tool calls, refusal, audio or
        function call carry the answer (the API's own shape); tool calls are sent with
        their arguments as the model wrote them.

        Raises:
            ValueError: a tool call without an id or a function name.
        """
        fields = self.__dict__
        out: dict[str, object] = {"role": "assistant"}
        calls = tool_calls_to_openai(fields["tool_calls"], fields["invalid_tool_calls"])
        content = fields["content"]
        refusal = fields["refusal"]
        audio = fields["audio"]
        function_call = fields["function_call"]
        if content or not (calls or refusal is not None or audio or function_call):
            out["content"] = content
        if fields["name"] is not None:
            out["name"] = fields["name"]
        if refusal is not None:
            out["refusal"] = refusal
        if calls:
            out["tool_calls"] = calls
        if audio is not None:
            out["audio"] = audio
        if function_call is not None:
            out["function_call"] = function_call
        return out

    def field_confidence(self, *, schema: SchemaInput = None) -> FieldReport:
        """The confidence of every leaf value of this JSON answer (`field_confidence`).

        Over `response_metadata.logprobs.content`; `schema` (a JSON schema, a pydantic model
        class or a `response_format` wrapper) marks the enum fields, which get their
        alternatives. An answer without content tokens (a refusal) has no fields.

        Raises:
            ValueError: the answer has no logprobs (the call did not ask for them).
        """
        logprobs = self.response_metadata.logprobs
        if logprobs is None:
            raise ValueError("this answer has no logprobs: make the call with logprobs=True")
        return field_confidence(logprobs.content or [], schema=schema)


def _is_wire_call(value: object) -> bool:
    return isinstance(value, Mapping) and "function" in value


class AIMessageChunk(AIMessage):
    """A piece of a streamed answer; `agg = agg + chunk` adds them up.

    Adding the chunks of one stream costs O(1) each: content, refusal, tool-call deltas
    and logprobs stay in the stream's shared buffers and are joined only when read.
    `tool_call_chunks` are the raw deltas (merged by index in an aggregate); `tool_calls`
    and `invalid_tool_calls` are what the arguments so far parse to, so a call still
    being streamed is an invalid one until its arguments are complete.
    """

    __slots__ = ("_text", "_more")

    # Every reader of the fields (attribute access, model_dump, repr, ==, copy, pickle) goes
    # through a lazy field's descriptor or `__dict__`: both are data descriptors that join
    # pending pieces there, once (they are set below the class). Other attributes are read
    # at C speed.
    __dict__ = ChunkDict()

    @model_validator(mode="before")
    @classmethod
    def _from_chunks(cls, data: object) -> object:
        if not isinstance(data, Mapping) or "tool_call_chunks" not in data:
            return data
        fields = dict(data)
        chunks = [ToolCallChunk.model_validate(c) for c in fields.pop("tool_call_chunks") or ()]
        valid, invalid = parse_calls((c.index, c.id, c.name, c.arguments) for c in chunks)
        fields["tool_calls"] = [*(fields.get("tool_calls") or ()), *valid]
        fields["invalid_tool_calls"] = [*(fields.get("invalid_tool_calls") or ()), *invalid]
        return fields

    @property
    def tool_call_chunks(self) -> list[ToolCallChunk]:
        """The tool-call deltas of this chunk (of an aggregate: merged by index)."""
        more = _extras_of(self)
        deltas = merge(more.tools.items()) if more is not None and more.tools else []
        return [
            ToolCallChunk.model_construct(index=index, id=call_id, name=name, arguments=args)
            for index, call_id, name, args in deltas
        ]

    def __add__(self, other: AIMessageChunk) -> AIMessageChunk:
        """Concatenate content, refusal, tool-call deltas and logprobs; keep the latest
        metadata and usage."""
        if not isinstance(other, AIMessageChunk):
            return NotImplemented
        mine = _slice_of(self)
        theirs = _slice_of(other)
        if mine is not None and theirs is not None and mine.pieces is theirs.pieces:
            if mine.stop == theirs.start:
                text = Slice(mine.pieces, mine.start, theirs.stop)
            elif mine.stop == len(mine.pieces) and type(mine.pieces) is not StreamText:
                mine.pieces.extend(theirs.pieces[theirs.start : theirs.stop])
                text = Slice(mine.pieces, mine.start, len(mine.pieces))
            else:
                text = _fork(self, other)
        elif (
            mine is not None
            and mine.stop == len(mine.pieces)
            and type(mine.pieces) is not StreamText
        ):
            mine.pieces.append(other.content)
            text = Slice(mine.pieces, mine.start, len(mine.pieces))
        else:
            text = _fork(self, other)
        more = _extras_of(self)
        other_more = _extras_of(other)
        if more is None:
            more = other_more
        elif other_more is not None:
            more = more + other_more
        fields = get_dict(self)  # the raw dicts: reading them must not join the text
        other_fields = get_dict(other)
        usage = other_fields["usage_metadata"] or fields["usage_metadata"]
        return make_chunk(
            text, fields["response_metadata"] + other_fields["response_metadata"], usage, more
        )

    def to_message(self) -> AIMessage:
        """The same answer as a plain `AIMessage`."""
        fields = self.__dict__
        return construct_fields_set(AIMessage, dict(fields), set(self.model_fields_set))


def _fork(left: AIMessageChunk, right: AIMessageChunk) -> Slice[str]:
    pieces = [left.content, right.content]
    return Slice(pieces, 0, 2)


_get = object.__getattribute__


def _slice_of(chunk: AIMessageChunk) -> Slice[str] | None:
    try:
        text: Slice[str] = _get(chunk, "_text")
    except AttributeError:  # built by the user, copied or unpickled: no shared buffer
        return None
    return text


def _extras_of(chunk: AIMessageChunk) -> Extras | None:
    try:
        more: Extras | None = _get(chunk, "_more")
    except AttributeError:  # built by the user, copied or unpickled: from its fields
        fields = joined(get_dict(chunk))
        refusal = fields["refusal"]
        deltas = deltas_of(fields["tool_calls"], fields["invalid_tool_calls"])  # type: ignore[arg-type]
        if refusal is None and not deltas:
            return None
        return Extras(
            Slice([refusal], 0, 1) if isinstance(refusal, str) else None,
            Slice(deltas, 0, len(deltas)) if deltas else None,
        )
    return more


_set_text = AIMessageChunk.__dict__["_text"].__set__
_set_more = AIMessageChunk.__dict__["_more"].__set__
# Set on the class after pydantic built it: in the class body they would be fields.
type.__setattr__(AIMessageChunk, "content", ChunkContent())
for _name in ("refusal", "tool_calls", "invalid_tool_calls"):
    type.__setattr__(AIMessageChunk, _name, ChunkLazy(_name))
_CHUNK_FIELDS_SET = frozenset({"content", "response_metadata", "usage_metadata"})


def make_chunk(
    text: Slice[str],
    metadata: ResponseMetadata,
    usage: UsageMetadata | None,
    more: Extras | None = None,
) -> AIMessageChunk:
    """Build a chunk without validation (its parts are already typed)."""
    refusal: Slice[str] | None = None
    tools: object = NO_TOOLS
    if more is not None:
        refusal = more.refusal
        if more.tools is not None:
            tools = more.tools
    chunk = construct_fields_set(
        AIMessageChunk,
        {
            "role": "assistant",
            "content": text,
            "name": None,
            "refusal": refusal,
            "tool_calls": tools,
            "invalid_tool_calls": tools,
            "audio": None,
            "function_call": None,
            "response_metadata": metadata,
            "usage_metadata": usage,
        },
        set(_CHUNK_FIELDS_SET),
    )
    _set_text(chunk, text)
    _set_more(chunk, more)
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
        ValueError: an unknown role, an empty list, or a field a message of that role
            cannot carry or has in a shape the API does not take (named in the message).
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
        allowed = cls.model_fields.keys() - {"role"}
        unknown = sorted(set(fields) - allowed, key=str)
        if unknown:
            raise ValueError(
                f"message {i} ({role}) has field {unknown[0]!r}, which a {role} message "
                f"cannot carry; its fields are {', '.join(sorted(allowed))}"
            )
        try:
            out.append(cls.model_validate(fields))
        except ValidationError as exc:
            raise ValueError(f"message {i} ({role}) is not valid: {exc}") from exc
    return out
