"""A loopback OpenAI-compatible replay server for offline tests.

:class:`ReplayServer` answers ``POST /v1/chat/completions`` over real HTTP on a
loopback address with recorded ChatCompletion answers (:data:`Completion`), both
as plain JSON and as a server-sent-event stream (``text/event-stream``), exactly
as the OpenAI API shapes them, token log probabilities included.  It uses the
standard library only, so any OpenAI client (the official SDK, LangChain,
``curl -N``) can be pointed at :attr:`ReplayServer.base_url`::

    from openai import OpenAI
    from logprobscope.testing import ReplayServer

    with ReplayServer() as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "how are you today?"}],
            logprobs=True,
        )

The same completions answer ``POST /v1/responses`` as OpenAI's Responses API
shapes them: a ``Response`` whose text parts carry the tokens at
``output[i].content[j].logprobs`` when the request has
``include=["message.output_text.logprobs"]`` (``"logprobs": []`` otherwise),
tool calls as ``function_call`` items, a refusal as a ``refusal`` part, a
``length`` finish as ``status: "incomplete"``; streamed, OpenAI's event
sequence with ``event:`` lines (created, in_progress, output_item.added,
content_part.added, one output_text.delta per chunk with its tokens' logprobs
without ``bytes``, output_text.done, content_part.done, output_item.done,
completed), and no ``[DONE]``.  One completion thus replays through both APIs
with the same text and tokens; the faults and deviations apply to both.

Without recorded completions the server replays :func:`seed_completions`, the
values of the LangChain.js "how to get log probabilities" guide, and, chosen by
the request, a tool call (:data:`SEED_TOOL_CALL`), the answer after its result
(:data:`SEED_TOOL_ANSWER`) and a structured answer (:data:`SEED_STRUCTURED`);
:func:`make_completion` builds others, tool calls and refusals included (streamed
as OpenAI streams them: a call's head, then its arguments in pieces; a refusal in
``delta.refusal`` with its logprobs in ``logprobs.refusal``).

:class:`Deviations` reproduces how other OpenAI-compatible servers differ from
OpenAI (presets: llama-cpp-python's server and llama.cpp's own ``llama-server``);
:class:`Faults` injects transport and protocol failures (delays, cut connections,
HTTP errors, malformed or invalid UTF-8 events, stalls, in-stream errors).

Streams are sent with ``Transfer-Encoding: chunked`` on HTTP/1.1 (so an abrupt
cut is detectable by the client as an incomplete body) and connections are kept
alive between requests.  Answers are encoded once per (completion, request
shape) and cached.

Text of a choice: when a recorded choice carries token logprobs, the streamed
deltas are made from its tokens.  If the joined token strings equal the
message content they are used as they are; else, if the joined token ``bytes``
decode to the content (byte-fallback tokens), the deltas are decoded from the
bytes; else the tokens win over the recorded content.  The non-streamed answer
uses the same text, so both modes always agree.

What the official ``openai`` SDK (3.x, on httpx2) raises for each fault:

- ``cut_after``: :class:`openai.APIConnectionError`, caused by
  ``httpx2.RemoteProtocolError`` (incomplete chunked body / Content-Length),
  streamed or not; the SDK retries it on a non-streamed call unless
  ``max_retries=0``.
- ``status``: the status' :class:`openai.APIStatusError` subclass (429:
  :class:`openai.RateLimitError`, 500: :class:`openai.InternalServerError`, ...);
  with ``fail_first`` and retries left the SDK retries (honouring
  ``Retry-After``) and succeeds.
- ``malformed_at``: :class:`json.JSONDecodeError`, raised from the iteration.
- ``invalid_utf8_at``: :class:`UnicodeDecodeError`, raised from the iteration
  (the SDK decodes each SSE line strictly).
- ``stall_after`` with a client timeout below ``stall_seconds``:
  :class:`openai.APITimeoutError`.
- ``error_event_at``: :class:`openai.APIError` with the event's message.

Run ``python -m logprobscope.testing [--port N] [--host 127.0.0.1] [--llama-cpp]``
to serve the seed completions in the foreground; the first line printed on
stdout is the base URL.
"""

from __future__ import annotations

from ._completions import DEFAULT_MODEL, Completion, ToolCallSpec, make_completion
from ._faults import Deviations, Faults
from ._main import main
from ._seeds import (
    SEED_INVOKE,
    SEED_STREAM,
    SEED_STRUCTURED,
    SEED_TOOL_ANSWER,
    SEED_TOOL_CALL,
    SEED_TOP_LOGPROBS,
    seed_completions,
)
from ._server import CompletionChooser, ReplayServer

__all__ = [
    "Completion",
    "CompletionChooser",
    "DEFAULT_MODEL",
    "Deviations",
    "Faults",
    "ReplayServer",
    "SEED_INVOKE",
    "SEED_STREAM",
    "SEED_STRUCTURED",
    "SEED_TOOL_ANSWER",
    "SEED_TOOL_CALL",
    "SEED_TOP_LOGPROBS",
    "ToolCallSpec",
    "main",
    "make_completion",
    "seed_completions",
]
