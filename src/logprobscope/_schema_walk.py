"""Which values of a JSON document a JSON schema declares as enums: a lazy walk, one step a value.

Field confidence gives the top alternatives of a value's first token when the value is a
choice among fixed options (the classification confidence). This module answers "is the value
at this position an enum?" while the scanner walks the document, from the schema the caller
asked the model to follow.

What it understands: `properties`, `additionalProperties`, `items` (a schema, or the old
tuple form), `prefixItems`, local `$ref`s (`#`, `#/$defs/Name`, any local JSON pointer),
`anyOf`, `oneOf` and `allOf` (every branch counts), and `enum` / `const` (pydantic writes
`Literal` and `Enum` fields as these). Anything else (remote refs, `patternProperties`,
conditionals) is not followed: such values are simply not known to be enums. A malformed
schema never raises here; it only declares less.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from pydantic import BaseModel

__all__ = ["SchemaInput", "SchemaNode", "schema_root"]

SchemaInput: TypeAlias = Mapping[str, object] | type[BaseModel] | None

# Bounds against cyclic `$ref`s and combinator explosions: the walk stays linear in the
# document whatever the schema.
_MAX_DEPTH = 16
_MAX_BRANCHES = 64


class SchemaNode:
    """The schemas that apply at one position of the document (a value, or its container)."""

    __slots__ = ("_root", "_schemas", "enum")

    def __init__(self, root: Mapping[str, object], schemas: tuple[Mapping[str, object], ...]):
        self._root = root
        self._schemas = schemas
        self.enum = any("enum" in s or "const" in s for s in schemas)

    def child(self, key: str | int) -> SchemaNode:
        """The node of the member `key` (an object's key, or an array's index)."""
        if not self._schemas:
            return self
        found: list[Mapping[str, object]] = []
        for schema in self._schemas:
            if isinstance(key, str):
                props = schema.get("properties")
                if isinstance(props, Mapping) and key in props:
                    self._expand(props[key], found, 0)
                else:
                    self._expand(schema.get("additionalProperties"), found, 0)
            else:
                prefix = schema.get("prefixItems")
                items = schema.get("items")
                if isinstance(prefix, list) and key < len(prefix):
                    self._expand(prefix[key], found, 0)
                elif isinstance(items, list):  # the draft-4 tuple form
                    if key < len(items):
                        self._expand(items[key], found, 0)
                else:
                    self._expand(items, found, 0)
        return SchemaNode(self._root, tuple(found))

    def _expand(self, schema: object, out: list[Mapping[str, object]], depth: int) -> None:
        """Append `schema` and what its `$ref` and combinators point to."""
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH or len(out) >= _MAX_BRANCHES:
            return
        out.append(schema)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            self._expand(_resolve(self._root, ref), out, depth + 1)
        for combinator in ("anyOf", "oneOf", "allOf"):
            branches = schema.get(combinator)
            if isinstance(branches, list):
                for branch in branches:
                    self._expand(branch, out, depth + 1)


def _resolve(root: Mapping[str, object], ref: str) -> object:
    """The target of a local `$ref` (a JSON pointer after `#`), or None."""
    if not ref.startswith("#"):
        return None
    target: object = root
    pointer = ref[1:]
    if not pointer:
        return target
    if not pointer.startswith("/"):
        return None
    for part in pointer[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, Mapping):
            target = target.get(part)
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return None
    return target


def schema_root(schema: SchemaInput) -> SchemaNode | None:
    """The node of the document's top-level value; None without a schema.

    Takes a JSON schema, a pydantic model class (its `model_json_schema()`), or OpenAI's
    wrappers: `{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}` (the
    whole `response_format`) and `{"name": ..., "schema": {...}}`. Raises TypeError for
    anything else (a programming error, not model output).
    """
    if schema is None:
        return None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        schema = schema.model_json_schema()
    if not isinstance(schema, Mapping):
        raise TypeError(
            f"schema must be a JSON schema mapping or a pydantic model class, not {schema!r}"
        )
    inner = schema.get("json_schema")
    if schema.get("type") == "json_schema" and isinstance(inner, Mapping):
        schema = inner
    wrapped = schema.get("schema")
    if "name" in schema and isinstance(wrapped, Mapping):
        schema = wrapped
    node = SchemaNode(schema, ())
    found: list[Mapping[str, object]] = []
    node._expand(schema, found, 0)
    return SchemaNode(schema, tuple(found))
