"""Building frozen models from parts that are already typed, without validating again."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

__all__ = ["construct", "construct_fields_set"]

_M = TypeVar("_M", bound=BaseModel)

# BaseModel's own slots, set through their descriptors: about a third cheaper than four
# `object.__setattr__` calls, which look each name up along the class's MRO first.
# `object.__new__` is what `cls.__new__` resolves to for every pydantic model (BaseModel
# defines no `__new__`).
_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def construct(cls: type[_M], fields: dict[str, object]) -> _M:
    """Like `cls.model_construct(**fields)`, for the hot path: `fields` must name every field."""
    obj: _M = _new(cls)
    _set_dict(obj, fields)
    _set_fields_set(obj, set(fields))
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def construct_fields_set(cls: type[_M], fields: dict[str, object], fields_set: set[str]) -> _M:
    """`construct` with an explicit `model_fields_set` (the set is taken, not copied)."""
    obj: _M = _new(cls)
    _set_dict(obj, fields)
    _set_fields_set(obj, fields_set)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj
