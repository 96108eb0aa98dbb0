"""Profile one benchmark configuration's hot path (the evidence behind bench/PROFILE.md).

    .venv/bin/python bench/profile_hot.py ours_stream 2000            # cProfile, top by own time
    .venv/bin/python bench/profile_hot.py ours_stream 2000 --calls 20 --sort cumulative
    .venv/bin/py-spy record -o /tmp/p.svg -- .venv/bin/python bench/profile_hot.py ours_stream \
        2000 --calls 50 --no-cprofile                             # sampling, no overhead bias

Starts `bench/server.py` in its own process, builds the configuration exactly as `run.py`
does, warms up, then profiles `--calls` calls.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", choices=sorted(run.BY_NAME))
    parser.add_argument("n", type=int)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--no-cprofile", action="store_true", help="just run (for py-spy)")
    args = parser.parse_args()

    server, base_url = run._start_server([args.n, 200])
    try:
        bench = run.build(args.config, base_url)
        bench.run(200)
        bench.run(args.n)
        t0 = time.process_time()
        if args.no_cprofile:
            for _ in range(args.calls):
                bench.run(args.n)
        else:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.calls):
                bench.run(args.n)
            profiler.disable()
        cpu = time.process_time() - t0
        bench.flush()
        print(
            f"{args.config} N={args.n}: {cpu * 1e6 / args.calls / args.n:.1f} µs/chunk "
            f"({'no profiler' if args.no_cprofile else 'under cProfile'})"
        )
        if not args.no_cprofile:
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
