"""Null and power rates of "WSM beats WSD" through the report's own functions, at any number of draws.

The slow test suite runs a few hundred draws per setting (tests/test_analysis_verdicts.py, about
0.3 s per draw); this script runs as many as asked (2,000 per setting: ~10 min each on 2 cores) and
prints one line per setting: seeds, planted effect, training-seed SD, draws, the "reproduced" rate and
its Monte-Carlo standard error.

    PYTHONPATH=.:tests .venv/bin/python benchmarks/null_rates.py --draws 2000
"""

from __future__ import annotations

import argparse
import math
import time

from helpers.null_study import rate

SETTINGS = (  # (seeds, planted effect in bpb (negative: merges better), training-seed SD)
    (1, 0.0, 0.0), (1, 0.0, 0.01), (3, 0.0, 0.01), (5, 0.0, 0.01), (3, -0.04, 0.01),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000, help="simulated studies per setting")
    args = parser.parse_args()
    print("seeds | effect | seed SD | draws | reproduced | MC error | seconds")
    for seeds, effect, seed_sd in SETTINGS:
        started = time.perf_counter()
        observed = rate(seeds, effect, args.draws, seed=seeds * 101, seed_sd=seed_sd)
        error = math.sqrt(max(observed * (1 - observed), 1e-12) / args.draws)
        print(f"{seeds} | {effect:+.2f} | {seed_sd:.2f} | {args.draws} | {observed:.3%} | ±{error:.3%} | "
              f"{time.perf_counter() - started:.0f}", flush=True)


if __name__ == "__main__":
    main()
