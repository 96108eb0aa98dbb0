"""The `logprobscope` command line: `run`, `demo` and `report`.

`main(argv)` runs it and returns the exit code: 0 success, 1 API or network failure (or no
logprobs in the answer), 2 usage or configuration error, 3 bad input file.
"""

from __future__ import annotations

from ._app import build_parser, main

__all__ = ["build_parser", "main"]
