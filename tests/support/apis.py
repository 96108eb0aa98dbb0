"""The two APIs a call can go through, for tests parametrised over them.

The replay server answers both from the same completion; what differs is where a stream's
events fall. A chat stream sends a role chunk, then one chunk per token; a Responses stream
sends created, in_progress, output_item.added and content_part.added, then one
output_text.delta per token. Our model makes one chunk of the role chunk and one of
`response.created`, so a fault at `api.event(n)` leaves exactly 1 + n chunks either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from logprobscope import ChatOpenAI
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory


@dataclass(frozen=True)
class Api:
    """Chat Completions (`/v1/chat/completions`) or Responses (`/v1/responses`)."""

    name: str
    responses: bool
    first_text_event: int  # the SSE index of a seed stream's first token event
    seed_stream_events: int  # SSE events of the seed stream (usage asked), [DONE] aside

    def event(self, tokens: int) -> int:
        """The SSE index right after `tokens` token events of a seed stream."""
        return self.first_text_event + tokens

    def __str__(self) -> str:
        return self.name


CHAT = Api("chat", responses=False, first_text_event=1, seed_stream_events=1 + 19 + 1 + 1)
RESPONSES = Api("responses", responses=True, first_text_event=4, seed_stream_events=4 + 19 + 4)
APIS = (CHAT, RESPONSES)


def through(make_model: ModelFactory, api: Api) -> ModelFactory:
    """`make_model`, its models calling through `api` (a module's own `make_model` fixture).

    The `api` fixture (tests/conftest.py) parametrises a test over `APIS`.
    """

    def factory(server: ReplayServer, **kwargs: Any) -> ChatOpenAI:
        return make_model(server, use_responses_api=api.responses, **kwargs)

    return factory
