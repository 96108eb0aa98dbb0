"""The package version, in a module of its own so that submodules need not import the root."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
