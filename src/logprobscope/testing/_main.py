"""`python -m logprobscope.testing`: serve the seed completions in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from ._faults import _NO_DEVIATIONS, Deviations, Faults
from ._server import ReplayServer

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the seed completions in the foreground until SIGTERM or SIGINT.

    The first line printed on stdout is the base URL.  Must run in the main
    thread (it installs signal handlers).
    """
    parser = argparse.ArgumentParser(
        prog="python -m logprobscope.testing",
        description="Loopback OpenAI-compatible replay server (seed completions).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    servers = parser.add_mutually_exclusive_group()
    servers.add_argument(
        "--llama-cpp",
        action="store_true",
        help="deviate from OpenAI as llama-cpp-python's server does",
    )
    servers.add_argument(
        "--llama-server",
        action="store_true",
        help="deviate from OpenAI as llama.cpp's own llama-server does",
    )
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds before each SSE event"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        server = ReplayServer(
            host=args.host,
            port=args.port,
            deviations=(
                Deviations.LLAMA_CPP
                if args.llama_cpp
                else Deviations.LLAMA_SERVER
                if args.llama_server
                else _NO_DEVIATIONS
            ),
            faults=Faults(chunk_delay=args.chunk_delay),
        )
    except ValueError as error:
        parser.error(str(error))
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with server:
            print(server.base_url, flush=True)
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
