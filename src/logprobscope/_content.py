"""Message content parts: their OpenAI shapes, checked before any request.

Parts stay the plain dicts the user wrote (sent unchanged, keys we do not know included,
so a server's own fields pass through); only what a known part type cannot do without is
checked, so a typo fails here and not as a 400 from the server. A part of a type we do
not know (a server's extension, e.g. `video_url`) passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from typing_extensions import NotRequired, TypedDict

__all__ = [
    "ContentPart",
    "FilePart",
    "ImagePart",
    "InputAudioPart",
    "RefusalPart",
    "TextPart",
    "check_parts",
]

ContentPart = dict[str, object]
"""One part of a message's content, in OpenAI's JSON shape (see the TypedDicts here)."""


class TextPart(TypedDict):
    """`{"type": "text", "text": ...}`: any role."""

    type: Literal["text"]
    text: str


class _ImageURL(TypedDict):
    url: str
    detail: NotRequired[str]


class ImagePart(TypedDict):
    """`{"type": "image_url", "image_url": {"url": ..., "detail": ...}}`: user messages."""

    type: Literal["image_url"]
    image_url: _ImageURL


class _InputAudio(TypedDict):
    data: str
    format: str


class InputAudioPart(TypedDict):
    """`{"type": "input_audio", "input_audio": {"data": base64, "format": "wav"}}`."""

    type: Literal["input_audio"]
    input_audio: _InputAudio


class _File(TypedDict, total=False):
    file_data: str
    file_id: str
    filename: str


class FilePart(TypedDict):
    """`{"type": "file", "file": {"file_id": ...} or {"file_data": ..., "filename": ...}}`."""

    type: Literal["file"]
    file: _File


class RefusalPart(TypedDict):
    """`{"type": "refusal", "refusal": ...}`: assistant messages."""

    type: Literal["refusal"]
    refusal: str


def _string(part: Mapping[str, object], key: str) -> str | None:
    return None if isinstance(part.get(key), str) else f"needs a string {key!r}"


def _object(
    part: Mapping[str, object], key: str, strings: Sequence[str], *, any_of: bool = False
) -> str | None:
    value = part.get(key)
    if not isinstance(value, Mapping):
        return f"needs an object {key!r}"
    present = [name for name in strings if isinstance(value.get(name), str)]
    if any_of:
        return None if present else f"{key!r} needs one of {', '.join(map(repr, strings))}"
    missing = [name for name in strings if name not in present]
    return f"{key!r} needs a string {missing[0]!r}" if missing else None


_CHECKS: dict[str, Callable[[Mapping[str, object]], str | None]] = {
    "text": lambda part: _string(part, "text"),
    "refusal": lambda part: _string(part, "refusal"),
    "image_url": lambda part: _object(part, "image_url", ("url",)),
    "input_audio": lambda part: _object(part, "input_audio", ("data", "format")),
    "file": lambda part: _object(part, "file", ("file_data", "file_id"), any_of=True),
}


def check_parts(parts: Sequence[object]) -> None:
    """Raise `ValueError` naming the first part a known type's shape rules out."""
    for i, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise ValueError(f"content part {i} must be an object, not {type(part).__name__}")
        kind = part.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"content part {i} needs a string 'type' (e.g. 'text')")
        check = _CHECKS.get(kind)
        problem = check(part) if check is not None else None
        if problem is not None:
            raise ValueError(f"content part {i} ({kind}) {problem}")
