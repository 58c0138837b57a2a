"""Measure the merge stage as a Slurm array against one process, on the local one-node cluster.

    PYTHONPATH=$PWD python scripts/merge_array_cost.py --repeats 3              # the tests' tiny Llama
    PYTHONPATH=$PWD python scripts/merge_array_cost.py --repeats 3 --mib 256    # 256 MiB checkpoints

Starts scripts/slurm-local.sh in a temporary state folder, writes the tests' tiny Llama series
(5 checkpoints; or with ``--mib N`` checkpoints of N MiB of random fp32 tensors, 4 MiB each) and
times the sweep's merge stage over it (4 merges; ~42 kB shards, or N/4 MiB): in the
launching process (``merge_stage_tasks=0``) and as a Slurm array of 2 tasks, ``--repeats`` times
each, interleaved, each into a fresh cache. For every task it reads its submitit log's first and last
timestamps (the task's Python process, start to end). Prints medians and samples as markdown rows.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import torch  # noqa: E402
from helpers.merging import updates_series  # noqa: E402  (the tests' tiny series)
from safetensors.torch import save_file  # noqa: E402
from test_merge_array import SHARD_MIB, stage, sweep_config  # noqa: E402  (the stage exactly as the tests run it)

SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
STAMP = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\)")


def random_series(root: Path, steps: list[int], mib: int) -> None:
    """Checkpoints of ``mib`` MiB: seeded random fp32 tensors of 4 MiB each, one .safetensors file per step."""
    root.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for step in steps:
        tensors = {f"w{i:03d}": torch.randn(1024, 1024, generator=gen) for i in range(max(1, mib // 4))}
        save_file(tensors, root / f"checkpoint-{step}.safetensors", metadata={"format": "pt"})


def task_seconds(sweep_dir: Path) -> list[float]:
    """Start to end of each array task's Python process, from the timestamps of its submitit log."""
    seconds = []
    for log in sorted(sweep_dir.glob(".submitit/*_*/*_log.out")):
        stamps = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in STAMP.findall(log.read_text())]
        seconds.append((stamps[-1] - stamps[0]).total_seconds())
    return seconds


def main() -> None:
    """Time the stage in one process and as a P-task array, ``--repeats`` times each; print medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mib", type=int, default=0, help="checkpoint size in MiB (0: the tests' tiny Llama)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="merge-array-cost-"))
    state = work / "slurm"
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state)}
    subprocess.run([str(ROOT / "scripts" / "slurm-local.sh"), "start"], env=env, check=True)
    os.environ["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
    os.environ["PATH"] = f"{ROOT / 'scripts' / 'slurm-shims'}{os.pathsep}{os.environ['PATH']}"
    try:
        if args.mib:
            random_series(work / "run", [10, 20, 30, 40, 50], args.mib)
        else:
            updates_series(work / "run", [10, 20, 30, 40, 50])
        shard = str(args.mib / 4) if args.mib else SHARD_MIB
        for file in (work / "run").rglob("*"):
            os.utime(file, (time.time() - 60, time.time() - 60))
        samples: dict[str, list[float]] = {"one process": [], "Slurm array, 2 tasks": [], "one task": []}
        for repeat in range(args.repeats):
            for label, extra in (("one process", []), ("Slurm array, 2 tasks", ["merge_stage_tasks=2", *SLURM])):
                cfg = sweep_config(work / f"{label[:5]}-{repeat}", work / "run", f"sweep_name=r{repeat}", *extra,
                                   shard_mib=shard)
                started = time.perf_counter()
                assert stage(cfg).merged == 4
                samples[label].append(time.perf_counter() - started)
                if extra:
                    samples["one task"] += task_seconds(Path(cfg.paths.sweep_dir))
    finally:
        subprocess.run([str(ROOT / "scripts" / "slurm-local.sh"), "stop"], env=env, check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f}, {datetime.now():%Y-%m-%d}")
    for label, values in samples.items():
        print(f"| {label} | {statistics.median(values):.1f} s | {', '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()
