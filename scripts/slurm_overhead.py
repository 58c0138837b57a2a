"""Measure what Slurm costs here: the local cluster's start and stop, and Slurm's per-job overhead.

    python scripts/slurm_overhead.py --repeats 5        # from the project root; root, like slurm-local.sh

Starts and stops scripts/slurm-local.sh ``--repeats`` times (packages already installed), then runs
the micro duration sweep of the tests (3 jobs, cached study, merges and scores, so the jobs do no
compute: what remains is overhead) ``--repeats`` times each way, interleaved: locally (basic
launcher), on Slurm one job at a time (array_parallelism=1, comparable with local), and on Slurm
with the jobs in parallel. Prints medians (and every sample) as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers.sweep import MICRO  # noqa: E402  (the tests' micro study: the same sweep the Slurm tests run)

SWEEP = ["+sweep=duration", "merge.quantity=2", "merge.duration=8,16,32", "logger=none"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
SEQUENTIAL = "slurm, 1 at a time"
MODES = {  # label -> (sweep folder prefix, launcher overrides)
    "local": ("local", []),
    SEQUENTIAL: ("slurm-seq", [*SLURM, "hydra.launcher.array_parallelism=1"]),
    "slurm, parallel": ("slurm-par", SLURM),
}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[:6])} ... failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def job_seconds(array: str, env: dict[str, str]) -> list[float]:
    """Start to end of each task of a job array, from scontrol (whole seconds)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", array], env=env, capture_output=True, text=True).stdout
    spans = []
    for line in out.splitlines():
        fields = dict(t.split("=", 1) for t in line.split() if "=" in t)
        spans.append((datetime.fromisoformat(fields["EndTime"]) - datetime.fromisoformat(fields["StartTime"])).seconds)
    return spans


def row(name: str, samples: list[float], unit: str = "s") -> str:
    listed = ", ".join(f"{s:.1f}" for s in samples)
    return f"| {name} | {statistics.median(samples):.1f} {unit} | {listed} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="slurm-overhead-"))
    state = work / "cluster"
    script_env = {**os.environ, "SLURM_LOCAL_DIR": str(state)}
    env = {**os.environ, "SLURM_CONF": str(state / "etc" / "slurm.conf"),
           "PATH": f"{ROOT / 'scripts' / 'slurm-shims'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    script = str(ROOT / "scripts" / "slurm-local.sh")
    starts, stops = [], []
    for _ in range(args.repeats):
        starts.append(timed([script, "start"], script_env)[0])
        stops.append(timed([script, "stop"], script_env)[0])
    timed([script, "start"], script_env)
    try:
        base = [sys.executable, "-m", "wsm_exp", f"paths.sweeps={work}", f"paths.cache={work / '_cache'}", *MICRO,
                *SWEEP]
        timed([*base, "sweep_name=warmup"], env)  # trains the study, fills the merge and score caches
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        spans: list[float] = []
        for repeat in range(args.repeats):
            for mode, (prefix, launcher) in MODES.items():
                elapsed, output = timed([*base, f"sweep_name={prefix}-{repeat}", *launcher], env)
                walls[mode].append(elapsed)
                if mode == SEQUENTIAL:
                    spans += job_seconds(re.findall(r"Submitted Slurm job array (\d+)", output)[0], env)
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        timed([script, "stop"], script_env)
    jobs = SWEEP[2].count(",") + 1
    local, sequential = statistics.median(walls["local"]), statistics.median(walls[SEQUENTIAL])
    print(f"| what | median | samples (n={args.repeats}) |\n|---|---|---|")
    print(row("cluster start (packages installed)", starts))
    print(row("cluster stop", stops))
    for mode, samples in walls.items():
        print(row(f"micro sweep, {jobs} jobs, all cached: {mode}", samples))
    print(row("one Slurm job, start to end (scontrol, 1 at a time)", spans))
    print(f"\nSlurm overhead per job (1 at a time vs local): {(sequential - local) / jobs:.1f} s")


if __name__ == "__main__":
    main()
