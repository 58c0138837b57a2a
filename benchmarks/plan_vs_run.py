"""``plan=true`` against the real run: for each sweep, the plan's estimate and then the run's seconds, cold and warm.

Three sweeps, each planned and run twice: **cold** in a fresh cache (no timings: the plan probes the
machine) and **warm** in a cache where another sweep already ran (its timings calibrate the plan; the
sweep's own work is not cached). Per run: the plan's total, training and evaluation estimates, the run's
wall seconds, its training (the new records of ``<paths.studies>/timings.jsonl``) and its evaluation (the
console's ``computed … (x s)``), their ratios, and the 1-minute load average before and after.

    PYTHONPATH=.:tests .venv/bin/python benchmarks/plan_vs_run.py --root /tmp/pvr          # the micro study
    PYTHONPATH=.:tests .venv/bin/python benchmarks/plan_vs_run.py --root /tmp/pvr --tiny   # the tiny study

The sweeps (Δ the study's save spacing: 4 steps micro, 8 tiny): S1 the quantity sweep (N = 1, 2 at Δ;
trains the study), S2 the duration sweep (N = 2, D = 2Δ, 4Δ, 8Δ), S3 the study's WSM branch as a user
series on ``eval=benchmarks`` (ARC-Easy, PIQA and MMLU at ``eval.limit=2``: 57 subjects; N = 2, 4).
Warm: S2 after S1 in S1's cache, S3 with N = 3, 6 after N = 2, 4, S1 with ``seed=1`` (a new study seed
to train) after S2 in S2's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweeps(spacing: int) -> dict[str, list[str]]:
    """S1 and S2 on a study that saves every ``spacing`` steps (the micro study 4, the tiny one 8)."""
    return {"S1": ["+sweep=quantity", f"merge.interval={spacing}", "merge.quantity=1,2"],
            "S2": ["+sweep=duration", "merge.quantity=2",
                   f"merge.duration={2 * spacing},{4 * spacing},{8 * spacing}"]}


BENCHMARKS = ["eval=benchmarks", "eval.limit=2", "eval.limits={}", "eval.tasks=[wsm_arc_easy,wsm_piqa,wsm_mmlu]"]


def wsm_exp(cache: Path, name: str, args: list[str], preset: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "wsm_exp", f"paths.sweeps={cache.parent / 'sweeps'}", f"paths.cache={cache}",
               f"sweep_name={name}", *preset, "logger=none", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def estimates(plan: str) -> tuple[float, float, float]:
    """(total, training, evaluation) seconds a plan states."""
    line = next(x for x in plan.splitlines() if "estimated time" in x)
    values = [(float(v), u) for v, u in re.findall(r"~([\d.]+) (s|min)", line)]
    total, _, training, evaluation = [v * (60 if u == "min" else 1) for v, u in values]
    return total, training, evaluation


def trained_seconds(cache: Path) -> float:
    path = cache / "studies" / "timings.jsonl"
    return sum(json.loads(x)["seconds"] for x in path.read_text().splitlines()) if path.is_file() else 0.0


def measure(label: str, cache: Path, name: str, args: list[str], preset: list[str]) -> str:
    load = os.getloadavg()[0]
    plan = wsm_exp(cache, name, [*args, "plan=true"], preset)
    if plan.returncode:
        raise SystemExit(plan.stderr[-3000:])
    total, training, evaluation = estimates(plan.stdout)
    before, started = trained_seconds(cache), time.perf_counter()
    run = wsm_exp(cache, name, args, preset)
    wall = time.perf_counter() - started
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    trained = trained_seconds(cache) - before
    evaluated = sum(float(s) for s in re.findall(r"computed \S+: .* \(([\d.]+) s[;)]", run.stdout + run.stderr))
    probed = "probed" if "this model's forward pass" in plan.stdout else "records"
    ratio = lambda a, b: f"{a / b:.2f}" if b else "–"  # noqa: E731
    return (f"| {label} | {probed} | {total:.0f} / {training:.0f} / {evaluation:.0f} | {wall:.1f} / {trained:.1f} / "
            f"{evaluated:.1f} | {ratio(total, wall)} / {ratio(training, trained)} / {ratio(evaluation, evaluated)} | "
            f"{load:.1f} → {os.getloadavg()[0]:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="an empty folder for the caches")
    parser.add_argument("--tiny", action="store_true", help="the embedded tiny study (default: the micro one)")
    args = parser.parse_args()
    if args.tiny:
        preset, spacing = [], 8
    else:
        from helpers.sweep import MICRO

        preset, spacing = list(MICRO), 4
    runs = sweeps(spacing)
    print("| sweep | plan from | plan s: total / training / evaluation | run s: wall / training / evaluation "
          "| ratio plan / run | load |\n|---|---|---|---|---|---|")
    cold = {key: args.root / f"cold-{key}" / "cache" for key in ("S1", "S2", "S3")}
    for key in ("S1", "S2"):
        print(measure(f"{key} cold", cold[key], key, runs[key], preset), flush=True)
    series = next((cold["S1"] / "studies").glob("*-s0")) / "wsm"
    heldout = next((cold["S1"] / "studies").rglob("heldout.jsonl"))
    own = [f"series.path={series}", f"series.heldout={heldout}", "baselines.wsd_shapes=[]", "+sweep=quantity",
           f"merge.interval={spacing}", *BENCHMARKS]
    print(measure("S3 cold", cold["S3"], "S3", [*own, "merge.quantity=2,4"], preset), flush=True)
    print(measure("S2 warm (after S1)", cold["S1"], "S2", runs["S2"], preset), flush=True)
    print(measure("S3 warm (N = 3, 6 after N = 2, 4)", cold["S3"], "S3w", [*own, "merge.quantity=3,6"], preset),
          flush=True)
    print(measure("S1 warm (seed 1, after S2)", cold["S2"], "S1", [*runs["S1"], "seed=1"], preset), flush=True)


if __name__ == "__main__":
    main()
