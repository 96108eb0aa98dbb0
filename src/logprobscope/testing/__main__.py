"""`python -m logprobscope.testing [--port N] [--host 127.0.0.1] [--llama-cpp]`."""

from __future__ import annotations

import sys

from ._main import main

if __name__ == "__main__":
    sys.exit(main())
