"""JSON values of a trace file to Python values: OTLP ``AnyValue``s, ids, numbers, times.

Each converter either returns a typed value or raises `Malformed` with what was wrong; the
caller adds where (file and line) and turns it into a `TraceFormatError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from ._records import AttributeValue

__all__ = [
    "Malformed",
    "a_noun",
    "any_value",
    "as_dict",
    "as_float",
    "as_int",
    "as_list",
    "attributes",
    "enum_name",
    "field",
    "hex_id",
    "iso_nanos",
    "json_type",
    "plain_attributes",
]


class Malformed(Exception):
    """A value that is not what the OTLP JSON mapping allows there."""


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else "object"


def a_noun(noun: str) -> str:
    """The noun with its indefinite article."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def field(obj: Mapping[str, object], camel: str) -> object:
    """A field by its JSON (camelCase) name or its proto (snake_case) name."""
    if camel in obj:
        return obj[camel]
    return obj.get(_CAMEL_HUMP.sub("_", camel).lower())


def as_list(value: object, what: str) -> list[object]:
    """An array (None: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{what} is {a_noun(json_type(value))}, expected an array")
    return value


def as_dict(value: object, what: str) -> dict[str, object]:
    """An object (None: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{what} is {a_noun(json_type(value))}, expected an object")
    return value


def as_int(value: object, what: str, default: int = 0) -> int:
    """An integer, from a number or a decimal string (protobuf JSON's 64-bit integers)."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise Malformed(f"{what} is a boolean, expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise Malformed(f"{what} is {value!r}, expected an integer")


def as_float(value: object, what: str) -> float:
    """A number, or protobuf JSON's "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, bool):
        raise Malformed(f"{what} is a boolean, expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise Malformed(f"{what} is {value!r}, expected a number")


_HEX = re.compile(r"[0-9a-fA-F]*")


def hex_id(value: object, size: int) -> str:
    """A trace/span id as lowercase hex, from hex (OTLP JSON) or base64 (protobuf JSON)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise Malformed(f"id {value!r} is not a string")
    text = value.removeprefix("0x")
    if len(text) == 2 * size and _HEX.fullmatch(text):
        return text.lower()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == size:
        return decoded.hex()
    if _HEX.fullmatch(text):
        return text.lower()
    raise Malformed(f"id {value!r} is neither hex nor base64")


def any_value(value: object, what: str) -> AttributeValue:
    """An OTLP ``AnyValue`` object (camelCase or snake_case keys)."""
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an AnyValue object")
    for key, raw in value.items():
        name = key.replace("_", "").lower()
        if name == "stringvalue":
            if not isinstance(raw, str):
                raise Malformed(f"{what}.stringValue is not a string")
            return raw
        if name == "boolvalue":
            if not isinstance(raw, bool):
                raise Malformed(f"{what}.boolValue is not a boolean")
            return raw
        if name == "intvalue":
            return as_int(raw, f"{what}.intValue")
        if name == "doublevalue":
            return as_float(raw, f"{what}.doubleValue")
        if name == "arrayvalue":
            values = as_list(field(as_dict(raw, what), "values"), f"{what}.arrayValue.values")
            return tuple(any_value(v, f"{what}[{i}]") for i, v in enumerate(values))
        if name == "kvlistvalue":
            values = as_list(field(as_dict(raw, what), "values"), f"{what}.kvlistValue.values")
            return attributes(values, what)
        if name == "bytesvalue":
            if not isinstance(raw, str):
                raise Malformed(f"{what}.bytesValue is not a string")
            try:
                return base64.b64decode(raw)
            except (binascii.Error, ValueError):
                raise Malformed(f"{what}.bytesValue is not base64") from None
    return None  # an empty AnyValue


def attributes(value: object, what: str) -> dict[str, AttributeValue]:
    """An OTLP list of ``KeyValue`` objects."""
    out: dict[str, AttributeValue] = {}
    for i, kv in enumerate(as_list(value, what)):
        kv = as_dict(kv, f"{what}[{i}]")
        key = kv.get("key")
        if not isinstance(key, str):
            raise Malformed(f"{what}[{i}] has no string key")
        out[key] = any_value(kv.get("value", {}), f"attribute {key!r}")
    return out


def _plain_value(value: object) -> AttributeValue:
    if isinstance(value, list):
        return tuple(_plain_value(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    return str(value)


def plain_attributes(value: object, what: str) -> dict[str, AttributeValue]:
    """Console-exporter attributes (a plain JSON object) as AttributeValues."""
    return {str(k): _plain_value(v) for k, v in as_dict(value, what).items()}


def enum_name(value: object, names: Sequence[str], prefix: str, default: str) -> str:
    """An enum given as its number or its (possibly prefixed) name."""
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else default
    if isinstance(value, str):
        name = value.split(".")[-1].upper().removeprefix(prefix)
        return name if name in names else default
    return default


_ISO = re.compile(r"(.*?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?")


def iso_nanos(value: object, what: str) -> int:
    """An ISO-8601 time (the console exporter's) as nanoseconds since the epoch (None: 0)."""
    if value is None:
        return 0
    if not isinstance(value, str):
        raise Malformed(f"{what} is not an ISO-8601 string")
    match = _ISO.fullmatch(value.strip())
    if not match:
        raise Malformed(f"{what} {value!r} is not an ISO-8601 time")
    base, frac, zone = match.groups()
    try:
        moment = datetime.fromisoformat(base + ("+00:00" if zone in (None, "Z") else zone))
    except ValueError:
        raise Malformed(f"{what} {value!r} is not an ISO-8601 time") from None
    nanos = int((frac or "0").ljust(9, "0")[:9])
    return int(moment.timestamp()) * 1_000_000_000 + nanos
