"""Exit codes, and every failure as one clear line."""

from __future__ import annotations

import os
import re

import openai

EXIT_OK = 0
EXIT_FAILURE = 1  # the API or the network failed, or the answer is unusable (no logprobs)
EXIT_USAGE = 2  # bad arguments or configuration (argparse uses 2 as well)
EXIT_BAD_INPUT = 3  # an input file (prompts JSONL, trace file) cannot be read or parsed
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  the API or network failed, or the server returned no logprobs
  2  usage or configuration error (bad arguments, no API key)
  3  bad input file (prompts JSONL or trace file)"""


class CliError(Exception):
    """A failure to report as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace to one line and cap its length."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def effective_base_url(base_url: str | None) -> str:
    """The URL requests go to: the flag, OPENAI_BASE_URL, or the OpenAI API."""
    return base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"


def check_credentials(base_url: str | None) -> None:
    """Fail early, as a configuration error, when no key and no local server are given."""
    if base_url or os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return
    raise CliError(
        "no API key: set OPENAI_API_KEY, or point --base-url (or OPENAI_BASE_URL) at an "
        "OpenAI-compatible server",
        EXIT_USAGE,
    )


def _server_message(error: openai.APIError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return error.message


def _cause(error: BaseException) -> str:
    seen: set[int] = set()
    cause = error.__cause__ or error.__context__
    text = ""
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = str(cause) or type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return text


def describe_error(error: BaseException, base_url: str | None) -> CliError:
    """The CLI's error for an exception from a model call."""
    url = effective_base_url(base_url)
    if isinstance(error, CliError):
        return error
    if isinstance(error, openai.APITimeoutError):
        return CliError(f"timed out waiting for {url}")
    if isinstance(error, openai.APIConnectionError):
        cause = _cause(error)
        detail = f" ({one_line(cause, 120)})" if cause else ""
        return CliError(f"cannot connect to {url}{detail}")
    if isinstance(error, openai.AuthenticationError):
        return CliError(
            f"authentication failed at {url} (HTTP 401): {one_line(_server_message(error))}; "
            "check OPENAI_API_KEY"
        )
    if isinstance(error, openai.NotFoundError):
        return CliError(
            f"not found at {url} (HTTP 404): {one_line(_server_message(error))}; check the "
            "model name and the base URL"
        )
    if isinstance(error, openai.APIStatusError):
        return CliError(
            f"the server at {url} answered HTTP {error.status_code}: "
            f"{one_line(_server_message(error))}"
        )
    if isinstance(error, openai.APIResponseValidationError):
        return CliError(f"the server at {url} sent a malformed answer: {one_line(error.message)}")
    if isinstance(error, openai.APIError):
        return CliError(
            f"the server at {url} reported an error: {one_line(_server_message(error))}"
        )
    if isinstance(error, openai.OpenAIError):
        # Raised by the SDK before any request: e.g. no api_key anywhere.
        text = str(error)
        if "api_key" in text:
            return CliError(
                "no API key: set OPENAI_API_KEY, or point --base-url (or OPENAI_BASE_URL) at "
                "an OpenAI-compatible server",
                EXIT_USAGE,
            )
        return CliError(one_line(text), EXIT_USAGE)
    if isinstance(error, (ValueError, TypeError)):
        return CliError(one_line(str(error)), EXIT_USAGE)
    return CliError(f"{type(error).__name__}: {one_line(str(error))}")
