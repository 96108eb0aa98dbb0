"""The telemetry contract (docs/telemetry.md): every name, unit, bucket and default, in one place.

The writer (`logprobscope.otel`), the reader (`logprobscope.report`) and the CLI import these;
none of them spells a name or a default of its own. Standard names come from
`opentelemetry-semantic-conventions` (constants only: no OpenTelemetry API or SDK is imported
here); ours live under `logprobs.`. Changing a value here is a breaking change for users'
dashboards and queries: the contract is append-only.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_CHOICE_COUNT,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_SEED,
    GEN_AI_REQUEST_STREAM,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_TOKEN_TYPE,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)
from opentelemetry.semconv._incubating.attributes.openai_attributes import OPENAI_API_TYPE
from opentelemetry.semconv._incubating.metrics.gen_ai_metrics import (
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
    GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
    GEN_AI_CLIENT_TOKEN_USAGE,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT

__all__ = [
    "ERROR_TYPE",
    "GEN_AI_CLIENT_OPERATION_DURATION",
    "GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK",
    "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK",
    "GEN_AI_CLIENT_TOKEN_USAGE",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_CHOICE_COUNT",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_REQUEST_SEED",
    "GEN_AI_REQUEST_STREAM",
    "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_REQUEST_TOP_P",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "OPENAI_API_TYPE",
    "SERVER_ADDRESS",
    "SERVER_PORT",
]

# -- instrumentation scope -----------------------------------------------------------------

SCOPE_NAME: Final = "logprobscope"

# -- standard values -------------------------------------------------------------------------

OPERATION_CHAT: Final = "chat"  # the Chat Completions and the Responses API alike
API_CHAT_COMPLETIONS: Final = "chat_completions"  # `openai.api.type` values
API_RESPONSES: Final = "responses"
# A Responses API request asks for logprobs with this `include` entry (`logprobs.enabled`).
RESPONSES_LOGPROBS_INCLUDE: Final = "message.output_text.logprobs"
PROVIDER_OPENAI: Final = "openai"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# -- span attributes (ours) ----------------------------------------------------------------

LOGPROBS_ENABLED: Final = "logprobs.enabled"
LOGPROBS_TOP_LOGPROBS: Final = "logprobs.top_logprobs"
LOGPROBS_TOKEN_COUNT: Final = "logprobs.token_count"
LOGPROBS_SUM: Final = "logprobs.sum"
LOGPROBS_MEAN: Final = "logprobs.mean"
LOGPROBS_PERPLEXITY: Final = "logprobs.perplexity"
LOGPROBS_MIN: Final = "logprobs.min"
LOGPROBS_MIN_INDEX: Final = "logprobs.min_index"
LOGPROBS_ENTROPY_MEAN: Final = "logprobs.entropy.mean"
LOGPROBS_MARGIN_MEAN: Final = "logprobs.margin.mean"
LOGPROBS_LOW_CONFIDENCE_THRESHOLD: Final = "logprobs.low_confidence.threshold"
LOGPROBS_LOW_CONFIDENCE_COUNT: Final = "logprobs.low_confidence.count"
LOGPROBS_STREAM_COMPLETED: Final = "logprobs.stream.completed"
LOGPROBS_EVENTS_MODE: Final = "logprobs.events.mode"
LOGPROBS_EVENTS_DROPPED: Final = "logprobs.events.dropped"

# The refusal's tokens (choice 0): the same summary, under `logprobs.refusal.`.
LOGPROBS_REFUSAL_TOKEN_COUNT: Final = "logprobs.refusal.token_count"
LOGPROBS_REFUSAL_SUM: Final = "logprobs.refusal.sum"
LOGPROBS_REFUSAL_MEAN: Final = "logprobs.refusal.mean"
LOGPROBS_REFUSAL_PERPLEXITY: Final = "logprobs.refusal.perplexity"
LOGPROBS_REFUSAL_MIN: Final = "logprobs.refusal.min"
LOGPROBS_REFUSAL_MIN_INDEX: Final = "logprobs.refusal.min_index"
LOGPROBS_REFUSAL_ENTROPY_MEAN: Final = "logprobs.refusal.entropy.mean"
LOGPROBS_REFUSAL_MARGIN_MEAN: Final = "logprobs.refusal.margin.mean"
LOGPROBS_REFUSAL_LOW_CONFIDENCE_COUNT: Final = "logprobs.refusal.low_confidence.count"
REFUSAL_SUMMARY: Final = {
    LOGPROBS_TOKEN_COUNT: LOGPROBS_REFUSAL_TOKEN_COUNT,
    LOGPROBS_SUM: LOGPROBS_REFUSAL_SUM,
    LOGPROBS_MEAN: LOGPROBS_REFUSAL_MEAN,
    LOGPROBS_PERPLEXITY: LOGPROBS_REFUSAL_PERPLEXITY,
    LOGPROBS_MIN: LOGPROBS_REFUSAL_MIN,
    LOGPROBS_MIN_INDEX: LOGPROBS_REFUSAL_MIN_INDEX,
    LOGPROBS_ENTROPY_MEAN: LOGPROBS_REFUSAL_ENTROPY_MEAN,
    LOGPROBS_MARGIN_MEAN: LOGPROBS_REFUSAL_MARGIN_MEAN,
    LOGPROBS_LOW_CONFIDENCE_COUNT: LOGPROBS_REFUSAL_LOW_CONFIDENCE_COUNT,
}
"""The summary attribute of the content tokens -> the same figure over the refusal tokens."""
# Tokens of the choices other than 0 (n > 1), content and refusal: events only.
LOGPROBS_OTHER_CHOICES_TOKEN_COUNT: Final = "logprobs.other_choices.token_count"

# Field-level confidence of a structured answer (`logprobs.field` events).
LOGPROBS_FIELDS_COUNT: Final = "logprobs.fields.count"
LOGPROBS_FIELDS_COMPLETE: Final = "logprobs.fields.complete"
LOGPROBS_FIELDS_DROPPED: Final = "logprobs.fields.dropped"

# -- span events (ours) ----------------------------------------------------------------------

EVENT_TOKEN: Final = "logprobs.token"
TOKEN_INDEX: Final = "logprobs.token.index"
TOKEN_LINE: Final = "logprobs.token.line"
TOKEN_LOGPROB: Final = "logprobs.token.logprob"
TOKEN_PROBABILITY: Final = "logprobs.token.probability"
TOKEN_TOP_LOGPROBS: Final = "logprobs.token.top_logprobs"
TOKEN_TEXT: Final = "logprobs.token.text"
TOKEN_BYTES: Final = "logprobs.token.bytes"
TOKEN_TOP_TOKENS: Final = "logprobs.token.top_tokens"

EVENT_TOKENS: Final = "logprobs.tokens"
TOKENS_FIRST_INDEX: Final = "logprobs.tokens.first_index"
TOKENS_LAST_INDEX: Final = "logprobs.tokens.last_index"
TOKENS_LINES: Final = "logprobs.tokens.lines"
TOKENS_START_INDEX: Final = "logprobs.tokens.start_index"
TOKENS_LOGPROBS: Final = "logprobs.tokens.logprobs"
TOKENS_TOP_LOGPROBS: Final = "logprobs.tokens.top_logprobs"
TOKENS_TEXTS: Final = "logprobs.tokens.texts"
TOKENS_TOP_TOKENS: Final = "logprobs.tokens.top_tokens"

# Which tokens an event carries, when not choice 0's content (the attribute is then absent).
TOKEN_CHANNEL: Final = "logprobs.token.channel"
TOKEN_CHOICE_INDEX: Final = "logprobs.token.choice_index"
TOKENS_CHANNEL: Final = "logprobs.tokens.channel"
TOKENS_CHOICE_INDEX: Final = "logprobs.tokens.choice_index"
CHANNEL_CONTENT: Final = "content"
CHANNEL_REFUSAL: Final = "refusal"
CHANNELS: Final = (CHANNEL_CONTENT, CHANNEL_REFUSAL)

EVENT_FIELD: Final = "logprobs.field"
FIELD_PATH: Final = "logprobs.field.path"
FIELD_LOGPROB: Final = "logprobs.field.logprob"
FIELD_MIN_PROBABILITY: Final = "logprobs.field.min_probability"
FIELD_TOKEN_START: Final = "logprobs.field.token_start"
FIELD_TOKEN_STOP: Final = "logprobs.field.token_stop"
FIELD_ALTERNATIVES_TOKEN_INDEX: Final = "logprobs.field.alternatives.token_index"
FIELD_ALTERNATIVES_LOGPROBS: Final = "logprobs.field.alternatives.logprobs"
FIELD_ALTERNATIVES_TOKENS: Final = "logprobs.field.alternatives.tokens"
FIELD_VALUE: Final = "logprobs.field.value"

# `gen_ai.output.messages` part type of a refusal (a generic part of the conventions).
PART_REFUSAL: Final = "refusal"

# `logprobs.events.mode` values
MODE_TOKENS: Final = "tokens"
MODE_BATCHED: Final = "batched"
MODE_LOW_CONFIDENCE: Final = "low_confidence"
MODE_NONE: Final = "none"
EVENT_MODES: Final = (MODE_TOKENS, MODE_BATCHED, MODE_LOW_CONFIDENCE, MODE_NONE)

# -- metrics (ours) --------------------------------------------------------------------------

METRIC_TOKEN_PROBABILITY: Final = "logprobs.token.probability"
METRIC_RESPONSE_PERPLEXITY: Final = "logprobs.response.perplexity"
METRIC_RESPONSE_MIN_PROBABILITY: Final = "logprobs.response.min_probability"
METRIC_RESPONSE_ENTROPY: Final = "logprobs.response.entropy"
METRIC_TOKEN_LOW_CONFIDENCE: Final = "logprobs.token.low_confidence"

UNIT_RATIO: Final = "1"
UNIT_NAT: Final = "nat"
UNIT_TOKEN: Final = "{token}"
UNIT_SECONDS: Final = "s"

PROBABILITY_BUCKETS: Final = (
    0.01,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.99,
    0.999,
)
PERPLEXITY_BUCKETS: Final = (
    1.0,
    1.01,
    1.05,
    1.1,
    1.25,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
)
ENTROPY_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)

# Advisory bucket boundaries of the GenAI semantic conventions (gen-ai-metrics.md).
TOKEN_USAGE_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
# time_to_first_chunk and time_per_output_chunk use the duration boundaries in the conventions.
CHUNK_TIME_BUCKETS: Final = DURATION_BUCKETS

# -- defaults --------------------------------------------------------------------------------

DEFAULT_LOW_CONFIDENCE_THRESHOLD: Final = 0.5
"""Probability below which a token is low-confidence, unless the user sets another."""
DEFAULT_EVENTS_MODE: Final = MODE_TOKENS

# -- configuration ---------------------------------------------------------------------------

ENV_CAPTURE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# Read by the OpenTelemetry-style instrumentors (logprobscope.instrumentation) when
# instrument() is called without the option, as `opentelemetry-instrument` calls it.
ENV_EVENTS: Final = "LOGPROBSCOPE_EVENTS"
ENV_LOW_CONFIDENCE_THRESHOLD: Final = "LOGPROBSCOPE_LOW_CONFIDENCE_THRESHOLD"
# Entry point names under `opentelemetry_instrumentor` (what
# OTEL_PYTHON_DISABLED_INSTRUMENTATIONS lists to turn one off).
INSTRUMENTOR_OPENAI: Final = "logprobscope_openai"
INSTRUMENTOR_LANGCHAIN: Final = "logprobscope_langchain"
