"""Structured output: `response_format` from a schema, and answers parsed next to the message.

`ChatOpenAI.with_structured_output(Schema)` gives a `StructuredChatModel`; its calls return
a `StructuredOutput` holding the parsed object *and* the message it was parsed from, so the
answer's logprobs are never thrown away. A refusal or an answer that does not parse is a
result (`parsed` None, `refusal` or `parsing_error` set), not an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import openai
from pydantic import BaseModel
from typing_extensions import Unpack

from ._callbacks import Callbacks
from ._fields import FieldReport
from ._messages import AIMessage, MessageInput
from ._params import CallOptions
from ._stream import AsyncChatStream, ChatStream

if TYPE_CHECKING:
    from ._model import ChatOpenAI

__all__ = [
    "ResponseFormat",
    "StructuredChatModel",
    "StructuredOutput",
    "parser_for",
    "response_format_param",
]

T = TypeVar("T")

ResponseFormat = Mapping[str, object] | type[BaseModel]
"""An OpenAI `response_format` dict, or a pydantic model (sent as a strict JSON schema)."""


def _strict_schema(model: type[BaseModel]) -> dict[str, object]:
    # The SDK's public helper makes pydantic's schema strict; its parameters are that schema.
    tool = openai.pydantic_function_tool(model)
    schema: dict[str, object] = json.loads(json.dumps(tool["function"].get("parameters")))
    return schema


def response_format_param(value: object) -> dict[str, object]:
    """The request's `response_format`: a dict unchanged, a pydantic model as a strict schema.

    Raises:
        TypeError: neither a dict nor a pydantic model class.
    """
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {
            "type": "json_schema",
            "json_schema": {
                "name": value.__name__,
                "strict": True,
                "schema": _strict_schema(value),
            },
        }
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        return dict(value)
    raise TypeError(
        "response_format must be an OpenAI response_format dict (e.g. {'type': 'json_schema', "
        "'json_schema': {...}}) or a pydantic model class"
    )


def _schema_format(schema: Mapping[str, object], name: str | None, strict: bool | None) -> object:
    if schema.get("type") in ("json_schema", "json_object"):
        return schema  # already a response_format
    title = name or schema.get("title")
    if not isinstance(title, str) or not title:
        raise ValueError("a JSON schema needs a 'title' (or pass name=...) to name the format")
    json_schema: dict[str, object] = {"name": title, "schema": dict(schema)}
    if strict is not None:
        json_schema["strict"] = strict
    return {"type": "json_schema", "json_schema": json_schema}


def _parse_object(text: str) -> dict[str, object]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"the answer is JSON but not an object: {type(value).__name__}")
    return value


def parser_for(
    schema: type[BaseModel] | Mapping[str, object], *, name: str | None, strict: bool | None
) -> tuple[dict[str, object], Callable[[str], object]]:
    """(the response_format, the parser of an answer's text) for a schema."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return response_format_param(schema), schema.model_validate_json
    if isinstance(schema, Mapping):
        return response_format_param(_schema_format(schema, name, strict)), _parse_object
    raise TypeError("schema must be a pydantic model class or a JSON schema dict")


@dataclass(frozen=True)
class StructuredOutput(Generic[T]):
    """An answer parsed into a schema, next to the message it was parsed from.

    `parsed` is None when the model refused (`refusal` is its text, the refusal's tokens
    are in `message.response_metadata.logprobs.refusal`) or when the text did not parse
    (`parsing_error` says why, e.g. an answer cut by `max_tokens`). `schema` is the
    `response_format` the answer was asked in (for `field_confidence`; not compared).
    """

    message: AIMessage
    parsed: T | None
    parsing_error: Exception | None = None
    schema: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

    @property
    def refusal(self) -> str | None:
        """The model's refusal text, if it refused."""
        return self.message.refusal

    def field_confidence(self) -> FieldReport:
        """The confidence of every leaf value of the answer, enums marked by the schema.

        `message.field_confidence(schema=self.schema)`: paths, joint logprobs, lowest
        token probabilities, token ranges and, for enums and booleans, the alternatives.

        Raises:
            ValueError: the answer has no logprobs (the call did not ask for them).
        """
        return self.message.field_confidence(schema=self.schema)


class StructuredChatModel(Generic[T]):
    """A `ChatOpenAI` whose answers are parsed into a schema; from `with_structured_output`.

    `invoke`/`ainvoke`/`batch`/`abatch` return `StructuredOutput`s. `stream`/`astream` give
    the model's chunks (with their logprobs): add them up and call `parse` on the result.
    """

    def __init__(
        self,
        model: ChatOpenAI,
        parse: Callable[[str], T],
        *,
        schema: Mapping[str, object] | None = None,
    ) -> None:
        self._model = model
        self._parse = parse
        self._schema = schema

    @property
    def model(self) -> ChatOpenAI:
        """The model the calls go to, its `response_format` set to the schema."""
        return self._model

    def parse(self, message: AIMessage) -> StructuredOutput[T]:
        """Parse an answer of this schema (e.g. a stream's aggregate) into a result."""
        schema = self._schema
        if message.refusal:
            return StructuredOutput(message, None, schema=schema)
        try:
            parsed = self._parse(message.content)
        except ValueError as exc:
            error: Exception = exc
            if message.response_metadata.finish_reason == "length":
                error = ValueError(f"the answer was cut at its token limit: {exc}")
            return StructuredOutput(message, None, error, schema=schema)
        return StructuredOutput(message, parsed, schema=schema)

    @staticmethod
    def _check(options: Mapping[str, object]) -> None:
        if "response_format" in options:
            raise TypeError("response_format is set by with_structured_output; it cannot change")

    def invoke(
        self,
        input: MessageInput,
        *,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> StructuredOutput[T]:
        """`ChatOpenAI.invoke`, the answer parsed."""
        self._check(options)
        message = self._model.invoke(
            input, callbacks=callbacks, tags=tags, metadata=metadata, **options
        )
        return self.parse(message)

    async def ainvoke(
        self,
        input: MessageInput,
        *,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> StructuredOutput[T]:
        """Async `invoke`."""
        self._check(options)
        message = await self._model.ainvoke(
            input, callbacks=callbacks, tags=tags, metadata=metadata, **options
        )
        return self.parse(message)

    def batch(
        self,
        inputs: Sequence[MessageInput],
        *,
        max_concurrency: int | None = None,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[StructuredOutput[T]]:
        """`ChatOpenAI.batch`, each answer parsed."""
        self._check(options)
        messages = self._model.batch(
            inputs,
            max_concurrency=max_concurrency,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
            **options,
        )
        return [self.parse(message) for message in messages]

    async def abatch(
        self,
        inputs: Sequence[MessageInput],
        *,
        max_concurrency: int | None = None,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[StructuredOutput[T]]:
        """Async `batch`."""
        self._check(options)
        messages = await self._model.abatch(
            inputs,
            max_concurrency=max_concurrency,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
            **options,
        )
        return [self.parse(message) for message in messages]

    def stream(
        self,
        input: MessageInput,
        *,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> ChatStream:
        """`ChatOpenAI.stream` with the schema: parse the chunks' sum with `parse`."""
        self._check(options)
        return self._model.stream(
            input, callbacks=callbacks, tags=tags, metadata=metadata, **options
        )

    def astream(
        self,
        input: MessageInput,
        *,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> AsyncChatStream:
        """Async `stream`."""
        self._check(options)
        return self._model.astream(
            input, callbacks=callbacks, tags=tags, metadata=metadata, **options
        )
