"""Null rates and power of every claim through the report's decision functions (tests/helpers/null_claims.py).

Prints one markdown row per claim: the false "reproduced" rate under the claim's least favourable null at
1, 3 and 5 seeds (1 seed: the null its interval covers, evaluation noise only; beside it in brackets the rate
when the training seed also differs, which a one-seed verdict says it does not cover), each ± its Monte-Carlo
standard error, then the share of 3-seed runs that find the planted effect and where its size comes from.

    PYTHONPATH=.:tests .venv/bin/python benchmarks/null_rates.py --draws 2000
"""

from __future__ import annotations

import argparse
import math
import time

from helpers.null_claims import SIMS, rate


def cell(value: float, draws: int) -> str:
    return f"{value:.1%} ± {math.sqrt(max(value * (1 - value), 1e-12) / draws):.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000, help="simulated studies per claim and setting")
    args = parser.parse_args()
    n = args.draws
    started = time.perf_counter()
    print(f"| claim (least favourable null) | 1 seed [training noise too] | 3 seeds | 5 seeds | "
          f"found at 3 seeds | planted effect |")
    print("|---|---|---|---|---|---|")
    for sim in SIMS:
        if sim.null is None:
            nulls = ["—"] * 3
        else:
            one = rate(sim, 1, sim.null, n, seed=1, training=False)
            noisy = rate(sim, 1, sim.null, n, seed=1)
            nulls = [f"{cell(one, n)} [{noisy:.1%}]", *(cell(rate(sim, s, sim.null, n, seed=s), n) for s in (3, 5))]
        power = cell(rate(sim, 3, sim.effect, n, seed=11), n) if sim.effect is not None else "—"
        print(f"| {sim.claim} | {' | '.join(nulls)} | {power} | {sim.source} |", flush=True)
    print(f"\n{n} draws per cell; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
