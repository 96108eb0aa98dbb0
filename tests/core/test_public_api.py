"""Every public module's `__all__`: there, sorted, without duplicates, importable and complete.

Public modules are found by walking the package: every module whose dotted path has no
component starting with "_" (`logprobscope.otel`, not `logprobscope.otel._call` nor
`logprobscope.__main__`).

Complete: `__all__` lists every name the module offers, that is

- every public name (no leading "_") the module binds at its top level with `class`, `def`,
  `async def`, or an assignment to a name that is not all lower-case (UPPER_CASE constants,
  CamelCase type aliases; lower-case module state such as `logger` is not API). Statements
  under `if TYPE_CHECKING:` bind nothing at run time and do not count; those under other `if`
  and `try` blocks do;
- in a package's `__init__`, every public name it imports from a private logprobscope module
  (one with a path component starting with "_", such as `._call` or `.._figures`): that is
  what a package's `__init__` is for. A name imported for its own use takes a "_" alias.

Plain modules (`logprobscope.instrument`) import from private modules for their own use:
only what they define counts. Extra names in `__all__` are allowed if they import.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest

import logprobscope

PACKAGE = "logprobscope"
# What the walk must find at least, so that the tests below cannot pass on nothing.
KNOWN = {
    "logprobscope",
    "logprobscope.cli",
    "logprobscope.instrument",
    "logprobscope.langchain",
    "logprobscope.otel",
    "logprobscope.report",
    "logprobscope.testing",
}


def _is_private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split("."))


def _fail(name: str) -> None:
    raise ImportError(f"cannot import {name} while looking for public modules")


def _public_modules() -> list[str]:
    found = [PACKAGE]
    for info in pkgutil.walk_packages(logprobscope.__path__, f"{PACKAGE}.", onerror=_fail):
        if not _is_private(info.name):
            found.append(info.name)
    return sorted(found)


PUBLIC = _public_modules()


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _all(name: str) -> list[str]:
    names = getattr(_module(name), "__all__", None)
    assert isinstance(names, (list, tuple)), f"{name} has no __all__ list"
    assert all(isinstance(n, str) for n in names), names
    return list(names)


# -- what a module offers --------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's own statements, with those of `if` and `try` blocks run at import."""
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                yield from _top_level(block)
            yield from _top_level(node.finalbody)
        else:
            yield node


def _assigned(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return [node.target.id] if isinstance(node.target, ast.Name) else []
    type_alias = getattr(ast, "TypeAlias", None)  # `type X = ...`, Python 3.12+
    if type_alias is not None and isinstance(node, type_alias):
        name = node.name
        return [name.id] if isinstance(name, ast.Name) else []
    return []


def _reexported(node: ast.ImportFrom, package: str) -> list[str]:
    source = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
    if not source.startswith(f"{PACKAGE}.") or not _is_private(source):
        return []
    names: list[str] = []
    for alias in node.names:
        if alias.name == "*":
            names.extend(_all(source))
        else:
            names.append(alias.asname or alias.name)
    return names


def offered_names(source: str, *, module: str, is_package: bool) -> set[str]:
    """The public names a module with this source offers (see the module docstring)."""
    names: set[str] = set()
    for node in _top_level(ast.parse(source).body):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            if is_package:
                names.update(_reexported(node, module))
        else:
            names.update(n for n in _assigned(node) if n != n.lower())
    return {n for n in names if not n.startswith("_")}


def _offered(name: str) -> set[str]:
    module = _module(name)
    assert module.__file__ is not None
    source = Path(module.__file__).read_text(encoding="utf-8")
    return offered_names(source, module=name, is_package=hasattr(module, "__path__"))


# -- the checks --------------------------------------------------------------------------------


def test_the_walk_finds_every_public_module() -> None:
    assert set(PUBLIC) >= KNOWN, sorted(KNOWN - set(PUBLIC))
    assert not any(_is_private(name) for name in PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_all_has_no_duplicates(name: str) -> None:
    twice = sorted(n for n, count in Counter(_all(name)).items() if count > 1)
    assert not twice, f"{name}.__all__ lists these more than once: {twice}"


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_sorted(name: str) -> None:
    names = _all(name)
    assert names == sorted(names), f"{name}.__all__ is not sorted"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_name_in_all_imports(name: str) -> None:
    module = _module(name)
    missing = [n for n in _all(name) if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names the module does not have: {missing}"


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_complete(name: str) -> None:
    offered = _offered(name)
    assert offered, f"{name} offers nothing: is the source read?"
    missing = sorted(offered - set(_all(name)))
    assert not missing, f"{name}.__all__ leaves out: {missing}"


# -- the completeness rule itself ---------------------------------------------------------------

SOURCE = """
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeAlias

from opentelemetry.trace import Span
from logprobscope.otel import LogprobTelemetry as Public
from ._core import CallTelemetry, LogprobTelemetry as Core, capture_content_from_env as _own
from .._figures import LogprobStats

if TYPE_CHECKING:
    from ._setup import TelemetryHandle

    class OnlyForTypes: ...
else:
    FALLBACK = 1

try:
    from ._handler import OpenTelemetryCallbackHandler
except ImportError:
    def OpenTelemetryCallbackHandler() -> None: ...

logger = logging.getLogger("logprobscope")
LIMIT = 3
Mode: TypeAlias = str
Unbound: int
_HIDDEN = 1


class Handler: ...


def configure() -> None: ...


async def aconfigure() -> None: ...


def _helper() -> None: ...
"""
DEFINED = {"FALLBACK", "OpenTelemetryCallbackHandler", "LIMIT", "Mode", "Handler", "configure"}
DEFINED |= {"aconfigure"}


def test_a_package_offers_its_definitions_and_what_it_imports_from_private_modules() -> None:
    offered = offered_names(SOURCE, module="logprobscope.otel", is_package=True)
    # Not Span (another package), Public (a public module), _own, TelemetryHandle, OnlyForTypes,
    # logger, Unbound (annotated, never bound), _HIDDEN, _helper.
    assert offered == DEFINED | {"CallTelemetry", "Core", "LogprobStats"}


def test_a_plain_module_offers_only_its_definitions() -> None:
    offered = offered_names(SOURCE, module="logprobscope.otel.plain", is_package=False)
    assert offered == DEFINED


def test_a_star_import_from_a_private_module_offers_its_all() -> None:
    source = "from ._call import *\n"
    offered = offered_names(source, module="logprobscope.otel", is_package=True)
    assert offered == set(_all("logprobscope.otel._call")) and offered
