"""`python -m logprobscope` and the `logprobscope` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`); return the exit code."""
    from logprobscope.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
