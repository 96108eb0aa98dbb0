"""Patching a class attribute next to other instrumentations, and undoing only our own layer.

OpenTelemetry instrumentations patch the same methods we do (`Completions.create`,
`BaseCallbackManager.__init__`), most with `wrapt` proxies whose `__wrapped__` is what they
call. Whoever patched first, undoing ours must leave theirs in place: our layer is found by
identity in the chain of `__wrapped__` links and taken out of it; where it cannot be (under a
plain-function wrapper that calls what it closed over), it stays and passes calls through.
"""

from __future__ import annotations

import types
from typing import Final

__all__ = ["below_proxies", "remove_layer"]

_MAX_DEPTH: Final = 16


def _proxy(node: object) -> bool:
    # A callable proxy (wrapt's FunctionWrapper and the like) calls its `__wrapped__`;
    # a plain function's `__wrapped__` (functools.wraps) is only a note. type(), not
    # isinstance(): a proxy reports its target's class as its own.
    return type(node) not in (types.FunctionType, types.MethodType) and hasattr(node, "__wrapped__")


def remove_layer(owner: type, name: str, layer: object, inner: object) -> bool:
    """Take `layer` (which calls `inner`) out of `owner.name`; False if it cannot be.

    When `layer` is the attribute itself, `inner` is put back. When it lies under proxies
    (`__wrapped__` links), the proxy right above it is pointed at `inner` instead.
    """
    node = owner.__dict__.get(name)
    if node is layer:
        setattr(owner, name, inner)
        return True
    for _ in range(_MAX_DEPTH):
        if node is None or not _proxy(node):
            return False
        below = getattr(node, "__wrapped__", None)
        if below is layer:
            try:
                node.__wrapped__ = inner
            except (AttributeError, TypeError):
                return False
            return True
        node = below
    return False


def below_proxies(owner: type, name: str) -> tuple[object | None, object]:
    """The lowest proxy on `owner.name` and what it calls, or (None, the attribute).

    Installing a layer as that proxy's `__wrapped__` puts it under every proxy there, next
    to the original function: innermost, inside the spans the proxies' instrumentations
    make current around the call.
    """
    holder: object | None = None
    node = owner.__dict__[name]
    for _ in range(_MAX_DEPTH):
        if not _proxy(node):
            break
        holder, node = node, node.__wrapped__
    return holder, node
