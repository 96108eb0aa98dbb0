"""`ChatOpenAI`: a chat model over the official `openai` SDK with logprobs in every result.

The SDK builds and sends the request (auth, base_url, retries, timeouts, its exception
types); the response bytes are decoded here straight into our types, which is what
makes a call with full telemetry cheaper than the SDK's own object building.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, overload
from uuid import uuid4

import openai
from pydantic import BaseModel
from typing_extensions import Unpack

from ._callbacks import Callbacks, Handler, Run, RunCallbacks, check_handlers
from ._endpoint import server_address_port
from ._messages import AIMessage, BaseMessage, MessageInput, coerce_messages
from ._params import CallOptions, build_request, merge_options, validate_options
from ._prepared import PreparedCall, decode_answer
from ._responses_request import input_items
from ._stream import AsyncChatStream, ChatStream
from ._tools import ToolChoice, ToolLike

if TYPE_CHECKING:
    from ._structured import ResponseFormat, StructuredChatModel

_M = TypeVar("_M", bound=BaseModel)

__all__ = ["ChatOpenAI"]

_CLIENTS_LOCK = threading.Lock()  # guards the lazy creation of every model's SDK clients
_LOCAL_KEY = "not-needed"  # servers on a custom base_url (vLLM, llama.cpp, Ollama) ignore it


def _client_settings(client: openai.OpenAI | openai.AsyncOpenAI) -> dict[str, Any]:
    """What a twin of the user's client (the other of sync/async) must be made with."""
    return {
        "api_key": client.api_key,
        "organization": client.organization,
        "project": client.project,
        "base_url": client.base_url,
        "timeout": client.timeout,
        "max_retries": client.max_retries,
        # the user's own headers and query (the SDK adds its auth and platform ones again)
        "default_headers": getattr(client, "_custom_headers", None),
        "default_query": getattr(client, "_custom_query", None),
    }


class ChatOpenAI:
    """A chat model whose results carry every token's logprob and top alternatives.

    Args:
        model: the model name, e.g. "gpt-4o".
        logprobs: ask for each output token's logprob.
        top_logprobs: also the k (0..20) most likely tokens at each position; needs logprobs.
        temperature, top_p, max_tokens, seed, stop, n: as the Chat Completions API takes them
            (`n` must be 1: see `batch` for several samples).
        stream_usage: ask streams for a final usage chunk (`stream_options.include_usage`).
        tools: tools the model may call: OpenAI tool dicts (sent unchanged), pydantic
            models or typed functions (sent as strict function tools). See `bind_tools`.
        tool_choice: "auto", "none", "required", a tool's name, or an OpenAI dict.
        parallel_tool_calls: whether the model may call several tools in one answer.
        response_format: an OpenAI dict, or a pydantic model sent as a strict JSON schema
            (the answer's text is the JSON; `with_structured_output` also parses it).
        model_kwargs: any other request field, passed through.
        use_responses_api: send calls to the Responses API (`POST /v1/responses`) instead
            of Chat Completions: the same results, logprobs included (a stream's tokens
            without `bytes`, which its events do not carry). Also a per-call option.
        instructions: the Responses API's system instructions (needs use_responses_api;
            per call, with `previous_response_id` too).
        client, async_client: ready `openai.OpenAI` / `openai.AsyncOpenAI` clients; otherwise
            they are made from api_key, base_url, timeout and max_retries, or as the SDK
            reads them from the environment (OPENAI_API_KEY, OPENAI_BASE_URL).
        callbacks: handlers attached to every call of this model.
        tags, metadata: passed to handlers in `run`.

    Every method validates its parameters before any request and raises `ValueError` or
    `TypeError` with a clear message; server and network errors are the SDK's own.
    """

    def __init__(
        self,
        model: str,
        *,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        n: int | None = None,
        stream_usage: bool = True,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: ToolChoice | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: ResponseFormat | None = None,
        model_kwargs: Mapping[str, object] | None = None,
        use_responses_api: bool = False,
        instructions: str | None = None,
        client: openai.OpenAI | None = None,
        async_client: openai.AsyncOpenAI | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        options: CallOptions = {
            "model": model,
            "logprobs": logprobs,
            "top_logprobs": top_logprobs,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "seed": seed,
            "stop": stop,
            "n": n,
            "stream_usage": stream_usage,
            "tools": tools,
            "tool_choice": tool_choice,
            "parallel_tool_calls": parallel_tool_calls,
            "response_format": response_format,
            "model_kwargs": {} if model_kwargs is None else model_kwargs,
            "use_responses_api": use_responses_api,
            "instructions": instructions,
        }
        options = validate_options(options)
        options["model_kwargs"] = dict(options["model_kwargs"])  # a mapping: checked above
        self._options = options
        self._client = client
        self._async_client = async_client
        self._owns_client = client is None
        self._owns_async_client = async_client is None
        self._client_args: dict[str, object] = {
            k: v
            for k, v in (
                ("api_key", api_key),
                ("base_url", base_url),
                ("timeout", timeout),
                ("max_retries", max_retries),
            )
            if v is not None
        }
        self._callbacks = check_handlers(callbacks)
        self._tags = tuple(tags or ())
        self._metadata = dict(metadata or {})

    @property
    def model(self) -> str:
        """The model name requests are sent with."""
        return self._options["model"]

    @property
    def callbacks(self) -> tuple[Handler, ...]:
        """The handlers attached to every call of this model."""
        return self._callbacks

    def with_callbacks(self, callbacks: Callbacks) -> ChatOpenAI:
        """A copy of this model with `callbacks` added to its handlers (clients shared)."""
        copy = object.__new__(ChatOpenAI)
        copy.__dict__.update(self.__dict__)
        copy._callbacks = self._callbacks + check_handlers(callbacks)
        return copy

    def _with_options(self, **updates: object) -> ChatOpenAI:
        options = validate_options(merge_options(self._options, updates))
        copy = object.__new__(ChatOpenAI)
        copy.__dict__.update(self.__dict__)
        copy._options = options
        return copy

    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: ToolChoice | None = None,
        parallel_tool_calls: bool | None = None,
    ) -> ChatOpenAI:
        """A copy of this model whose every call offers `tools` (clients shared).

        Tools are OpenAI tool dicts (sent unchanged), pydantic models or typed functions
        (strict function tools: `additionalProperties: false`, every argument required;
        a function's docstring gives the descriptions). The answers' calls are in
        `AIMessage.tool_calls`; answer each with a `ToolMessage(tool_call_id=call.id)`.

        Raises:
            TypeError, ValueError: a tool that cannot be described, or a `tool_choice`
                naming none of the tools.
        """
        return self._with_options(
            tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls
        )

    @overload
    def with_structured_output(
        self, schema: type[_M], *, name: str | None = None, strict: bool | None = None
    ) -> StructuredChatModel[_M]: ...

    @overload
    def with_structured_output(
        self, schema: Mapping[str, object], *, name: str | None = None, strict: bool | None = None
    ) -> StructuredChatModel[dict[str, object]]: ...

    def with_structured_output(
        self,
        schema: type[BaseModel] | Mapping[str, object],
        *,
        name: str | None = None,
        strict: bool | None = None,
    ) -> StructuredChatModel[Any]:
        """This model answering in `schema`, its answers parsed next to their messages.

        `schema` is a pydantic model (sent as a strict JSON schema; answers parsed into
        instances) or a JSON schema dict (named by `name` or its "title"; `strict` sent
        when given; answers parsed into dicts). A complete `response_format` dict
        (`{"type": "json_schema", ...}`) is taken as it is. Calls return
        `StructuredOutput(message, parsed, parsing_error)`: unlike LangChain's default,
        the message (and its logprobs) always comes along; `field_confidence()` on it gives
        each field's confidence, the schema's enums with their alternatives.
        """
        from ._structured import StructuredChatModel, parser_for

        response_format, parse = parser_for(schema, name=name, strict=strict)
        return StructuredChatModel(
            self._with_options(response_format=response_format), parse, schema=response_format
        )

    # -- clients ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the SDK clients this model made (not the ones it was given)."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close both SDK clients this model made (not the ones it was given)."""
        self.close()
        if self._async_client is not None and self._owns_async_client:
            await self._async_client.close()
            self._async_client = None

    def __enter__(self) -> ChatOpenAI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ChatOpenAI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _sdk_args(self) -> dict[str, object]:
        args = dict(self._client_args)
        if "api_key" not in args and not os.environ.get("OPENAI_API_KEY"):
            if args.get("base_url") or os.environ.get("OPENAI_BASE_URL"):
                args["api_key"] = _LOCAL_KEY
        return args

    def _sync_client(self) -> openai.OpenAI:
        if self._client is not None:
            return self._client
        with _CLIENTS_LOCK:  # batch's threads start at once: make one client, not one each
            return self._make_sync_client()

    def _make_sync_client(self) -> openai.OpenAI:
        if self._client is None:
            if self._async_client is not None and not self._client_args:
                self._client = openai.OpenAI(**_client_settings(self._async_client))
            else:
                self._client = openai.OpenAI(**self._sdk_args())  # type: ignore[arg-type]
        return self._client

    def _async_sdk_client(self) -> openai.AsyncOpenAI:
        if self._async_client is not None:
            return self._async_client
        with _CLIENTS_LOCK:
            return self._make_async_client()

    def _make_async_client(self) -> openai.AsyncOpenAI:
        if self._async_client is None:
            if self._client is not None and not self._client_args:
                self._async_client = openai.AsyncOpenAI(**_client_settings(self._client))
            else:
                self._async_client = openai.AsyncOpenAI(**self._sdk_args())  # type: ignore[arg-type]
        return self._async_client

    # -- shared preparation ---------------------------------------------------------------

    def _prepare(
        self,
        input: MessageInput,
        client: openai.OpenAI | openai.AsyncOpenAI,
        *,
        stream: bool,
        overrides: Mapping[str, object],
        callbacks: Callbacks | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, object] | None,
    ) -> PreparedCall:
        options = self._options
        if overrides:
            options = validate_options(merge_options(options, overrides))
        messages = coerce_messages(input)
        kwargs, params = build_request(options, messages, stream=stream)
        handlers = self._callbacks + check_handlers(callbacks) if callbacks else self._callbacks
        run_callbacks = None
        if handlers:
            host, port = server_address_port(client.base_url)
            run = Run.model_construct(
                run_id=uuid4(),
                model=options["model"],
                stream=stream,
                invocation_params=params,
                tags=self._tags + tuple(tags or ()),
                metadata={**self._metadata, **(metadata or {})},
                provider="openai",
                server_address=host,
                server_port=port,
                api="responses" if options.get("use_responses_api") else "chat_completions",
            )
            run_callbacks = RunCallbacks(run, handlers)
        return PreparedCall(messages, kwargs, run_callbacks, options)

    # -- one call -------------------------------------------------------------------------

    def invoke(
        self,
        input: MessageInput,
        *,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> AIMessage:
        """Send one request and return the answer with its logprobs."""
        client = self._sync_client()
        prepared = self._prepare(
            input,
            client,
            stream=False,
            overrides=options,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
        )
        run = prepared.callbacks
        try:
            if run:
                run.start_sync(prepared.messages)  # a raise_error handler ends the run here
            raw = prepared.endpoint(client).with_raw_response.create(**prepared.kwargs)
            message = decode_answer(raw, prepared)
        except BaseException as exc:
            if run:
                run.error_sync(exc)
            raise
        if run:
            run.end_sync(message)
        return message

    async def ainvoke(
        self,
        input: MessageInput,
        *,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> AIMessage:
        """Async `invoke`."""
        client = self._async_sdk_client()
        prepared = self._prepare(
            input,
            client,
            stream=False,
            overrides=options,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
        )
        run = prepared.callbacks
        try:
            if run:
                await run.astart(prepared.messages)  # a raise_error handler ends the run here
            raw = await prepared.endpoint(client).with_raw_response.create(**prepared.kwargs)
            message = decode_answer(raw, prepared)
        except BaseException as exc:
            if run:
                await run.aerror(exc)
            raise
        if run:
            await run.aend(message)
        return message

    def stream(
        self,
        input: MessageInput,
        *,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> ChatStream:
        """Stream the answer as `AIMessageChunk`s; `agg = agg + chunk` adds them up.

        Parameters are validated now; the request is sent on the first `next()`.
        """
        client = self._sync_client()
        prepared = self._prepare(
            input,
            client,
            stream=True,
            overrides=options,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
        )
        kwargs = prepared.kwargs
        endpoint = prepared.endpoint(client)
        return ChatStream(
            lambda: endpoint.create(**kwargs),
            callbacks=prepared.callbacks,
            messages=prepared.messages,
            accumulator=prepared.accumulator(),
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
        """Async `stream`: `async for chunk in model.astream(...)`."""
        client = self._async_sdk_client()
        prepared = self._prepare(
            input,
            client,
            stream=True,
            overrides=options,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
        )
        kwargs = prepared.kwargs
        endpoint = prepared.endpoint(client)
        return AsyncChatStream(
            lambda: endpoint.create(**kwargs),
            callbacks=prepared.callbacks,
            messages=prepared.messages,
            accumulator=prepared.accumulator(),
        )

    # -- many calls -----------------------------------------------------------------------

    def _check_batch(
        self,
        inputs: Sequence[MessageInput],
        options: Mapping[str, object],
        callbacks: Callbacks | None,
    ) -> list[list[BaseMessage]]:
        """What each call of a batch would reject, checked before the first request is sent."""
        merged = validate_options(merge_options(self._options, options)) if options else None
        check_handlers(callbacks)
        prompts = [coerce_messages(item) for item in inputs]
        if (merged or self._options).get("use_responses_api"):
            for prompt in prompts:
                input_items(prompt)  # what the Responses API has no place for
        return prompts

    def batch(
        self,
        inputs: Sequence[MessageInput],
        *,
        max_concurrency: int | None = None,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[AIMessage]:
        """`invoke` each input on a thread pool; answers in input order.

        Each call is its own run (and span) under the caller's current context. The first
        failure is raised after every call has finished.
        """
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not inputs:
            return []
        prompts = self._check_batch(inputs, options, callbacks)

        def one(item: MessageInput, context: contextvars.Context) -> AIMessage:
            return context.run(
                self.invoke, item, callbacks=callbacks, tags=tags, metadata=metadata, **options
            )

        workers = min(len(inputs), max_concurrency or 8)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="logprobscope") as pool:
            futures = [pool.submit(one, item, contextvars.copy_context()) for item in prompts]
        return [f.result() for f in futures]

    async def abatch(
        self,
        inputs: Sequence[MessageInput],
        *,
        max_concurrency: int | None = None,
        callbacks: Callbacks | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[AIMessage]:
        """Async `batch`, with at most `max_concurrency` calls in flight."""
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        prompts = self._check_batch(inputs, options, callbacks)
        limit = asyncio.Semaphore(max_concurrency or len(inputs) or 1)

        async def one(item: MessageInput) -> AIMessage:
            async with limit:
                return await self.ainvoke(
                    item, callbacks=callbacks, tags=tags, metadata=metadata, **options
                )

        results: list[AIMessage | BaseException] = await asyncio.gather(
            *(one(item) for item in prompts), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, AIMessage)]
