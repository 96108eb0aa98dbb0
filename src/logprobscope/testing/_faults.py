"""How answers depart from OpenAI's: `Deviations` and `Faults`, with their presets.

`Deviations` reproduces other servers' wire formats (presets: llama-cpp-python's server and
llama.cpp's own llama-server); `Faults` injects transport and protocol failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

__all__ = ["Deviations", "Faults"]


@dataclass(frozen=True)
class Deviations:
    """How a non-OpenAI server deviates from the OpenAI wire format.

    Attributes:
        bytes_null: Every ``bytes`` field is ``null`` (llama.cpp).
        null_logprobs_on_edges: The role-only first chunk carries
            ``"logprobs": null`` instead of ``{"content": [], "refusal": null}``
            (llama.cpp); the finish chunk carries ``null`` in both.
        ignore_include_usage: Never send the usage chunk nor ``usage`` keys,
            even with ``stream_options.include_usage`` (llama.cpp).
        no_logprobs: Never send logprobs (``"logprobs": null`` everywhere),
            even when they are asked for (on ``/v1/responses``: ``"logprobs": []``).
        omit_logprobs_key: Where a choice has no logprobs (the role-only first
            chunk, the finish chunk, an answer without logprobs) its
            ``logprobs`` key is left out instead of being ``null`` or empty,
            a logprobs object has no ``refusal`` key, and the role chunk's
            delta is ``{"role": "assistant", "content": null}`` (llama-server).
        token_ids: Every logprob entry and alternative carries an extra
            ``id``, the token's id in the model's vocabulary (llama-server);
            here the same token text always gets the same id.
        timings: A ``timings`` object (llama.cpp's token counts and speeds) at
            the top of a non-streamed answer, and on a stream's last chunk:
            the usage chunk when there is one, else the finish chunk
            (llama-server).
        default_top_logprobs: With ``logprobs: true`` and no ``top_logprobs``,
            this many alternatives per token, as many as the answer has
            (llama-server: 20; OpenAI: none).
        no_logprobs_for_top_zero: ``top_logprobs: 0`` returns no logprobs at
            all, instead of the tokens without alternatives (llama-server).
        usage_per_choice: With ``n`` > 1 the usage counts one choice's tokens,
            and a stream ends every choice as a stream of one: its finish chunk,
            then its own usage chunk when asked for (llama-server).
        empty_responses_logprobs: On ``/v1/responses`` only, no logprobs even
            with ``include=["message.output_text.logprobs"]``: every text part
            (and ``output_text.done``) carries ``"logprobs": []``, the text
            delta events no ``logprobs`` key (llama-server, whose chat
            completions do carry logprobs).
    """

    bytes_null: bool = False
    null_logprobs_on_edges: bool = False
    ignore_include_usage: bool = False
    no_logprobs: bool = False
    omit_logprobs_key: bool = False
    token_ids: bool = False
    timings: bool = False
    default_top_logprobs: int = 0
    no_logprobs_for_top_zero: bool = False
    usage_per_choice: bool = False
    empty_responses_logprobs: bool = False

    LLAMA_CPP: ClassVar[Deviations]
    """Preset of llama-cpp-python's server: the first three deviations."""

    LLAMA_SERVER: ClassVar[Deviations]
    """Preset of llama.cpp's own C++ ``llama-server``: the last seven deviations."""

    def __post_init__(self) -> None:
        if self.default_top_logprobs < 0:
            raise ValueError("default_top_logprobs must be >= 0")


Deviations.LLAMA_CPP = Deviations(
    bytes_null=True, null_logprobs_on_edges=True, ignore_include_usage=True
)
Deviations.LLAMA_SERVER = Deviations(
    omit_logprobs_key=True,
    token_ids=True,
    timings=True,
    default_top_logprobs=20,
    no_logprobs_for_top_zero=True,
    usage_per_choice=True,
    empty_responses_logprobs=True,
)


@dataclass(frozen=True)
class Faults:
    """Failures injected into the answers of ``POST /v1/chat/completions`` and ``/v1/responses``.

    SSE event indexes count every ``data:`` event of a stream from 0: the role
    chunk(s), the content chunks, the finish chunk(s), the usage chunk and
    ``[DONE]``; on ``/v1/responses`` every event (created, in_progress,
    output_item.added, content_part.added, then one per text delta, ...,
    completed), which has no ``[DONE]``.

    Attributes:
        chunk_delay: Seconds to sleep before each SSE event (streams only).
        cut_after: Close the connection abruptly after this many SSE events,
            without the end of the chunked body nor ``[DONE]``.  For a
            non-streamed answer: send the headers (with the full
            Content-Length) and half the body, then close.
        status: Answer with this HTTP status and an OpenAI-style error body.
        fail_first: With ``status``: only the first ``fail_first`` requests
            (counted from the last :meth:`ReplayServer.set_faults`) fail; 0
            means all of them.
        retry_after: Send ``Retry-After: <seconds>`` with the error status.
        malformed_at: The SSE event at this index has data that is not JSON
            (its JSON cut in half).
        invalid_utf8_at: The SSE event at this index has the invalid UTF-8
            bytes ``FF FE`` inside a string (its delta content if it has one).
        stall_after: After this many SSE events stop sending, keeping the
            connection open, for ``stall_seconds``, then go on.  For a
            non-streamed answer: stall before answering.
        stall_seconds: Length of the stall.  :meth:`ReplayServer.stop` ends it.
        error_event_at: Send the in-stream error payload
            ``{"error": {"message": ..., "type": "server_error", ...}}`` as the
            SSE event at this index, then end the stream (without ``[DONE]``);
            on ``/v1/responses`` the ``error`` event
            (``{"type": "error", "code": "server_error", "message": ...}``).
    """

    chunk_delay: float = 0.0
    cut_after: int | None = None
    status: int | None = None
    fail_first: int = 0
    retry_after: float | None = None
    malformed_at: int | None = None
    invalid_utf8_at: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 30.0
    error_event_at: int | None = None

    def __post_init__(self) -> None:
        if self.chunk_delay < 0 or self.stall_seconds < 0 or self.fail_first < 0:
            raise ValueError("chunk_delay, stall_seconds and fail_first must be >= 0")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        indexes = ("cut_after", "malformed_at", "invalid_utf8_at", "stall_after", "error_event_at")
        for name in indexes:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def _streams_plainly(self) -> bool:
        return (
            self.chunk_delay == 0
            and self.cut_after is None
            and self.stall_after is None
            and self.malformed_at is None
            and self.invalid_utf8_at is None
            and self.error_event_at is None
        )


_NO_DEVIATIONS: Final = Deviations()
_NO_FAULTS: Final = Faults()
