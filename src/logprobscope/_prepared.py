"""One call of `ChatOpenAI`, prepared: where it goes, and its non-streamed answer decoded.

A call goes to the Chat Completions API or to the Responses API (`use_responses_api`); the
SDK sends it either way, and its answer's bytes are decoded here into the same `AIMessage`.
"""

from __future__ import annotations

from typing import Any

import openai

from ._callbacks import RunCallbacks
from ._messages import AIMessage, BaseMessage
from ._params import CallOptions
from ._responses_wire import ResponseError, ResponsesAccumulator, message_from_response
from ._wire import loads, message_from_completion

__all__ = ["PreparedCall", "decode_answer"]


class PreparedCall:
    """One call, ready to send: its messages, SDK arguments, run and API."""

    __slots__ = ("messages", "kwargs", "callbacks", "responses", "logprobs")

    def __init__(
        self,
        messages: list[BaseMessage],
        kwargs: dict[str, object],
        callbacks: RunCallbacks | None,
        options: CallOptions,
    ) -> None:
        self.messages = messages
        self.kwargs = kwargs
        self.callbacks = callbacks
        self.responses = bool(options.get("use_responses_api"))
        self.logprobs = bool(options.get("logprobs"))

    def endpoint(self, client: Any) -> Any:
        """The SDK resource this call goes to (sync or async client alike)."""
        return client.responses if self.responses else client.chat.completions

    def accumulator(self) -> ResponsesAccumulator | None:
        """A Responses stream's event decoder; None: a chat stream's."""
        return ResponsesAccumulator(logprobs=self.logprobs) if self.responses else None


def decode_answer(
    raw: openai._legacy_response.LegacyAPIResponse[object], prepared: PreparedCall
) -> AIMessage:
    """A non-streamed answer's bytes as an `AIMessage`, as the API the call went to shapes them.

    Raises:
        openai.APIResponseValidationError: the answer is not a JSON object.
        openai.APIError: a Responses API answer whose status is "failed".
    """
    try:
        body = loads(raw.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise openai.APIResponseValidationError(
            raw.http_response, raw.text, message=f"the server's answer is not JSON: {exc}"
        ) from exc
    if not isinstance(body, dict):
        raise openai.APIResponseValidationError(
            raw.http_response, body, message="the server's answer is not a JSON object"
        )
    if not prepared.responses:
        return message_from_completion(body)
    try:
        return message_from_response(body, logprobs=prepared.logprobs)
    except ResponseError as failed:  # a 200 answer whose status is "failed"
        request = raw.http_response.request
        raise openai.APIError(failed.message, request, body=failed.body) from None
