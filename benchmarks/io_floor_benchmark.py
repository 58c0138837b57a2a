"""One merge against the I/O floor, and shard-parallel workers: wsm-merge --workers 1 vs 2.

    PYTHONPATH=. .venv/bin/python benchmarks/io_floor_benchmark.py [--params 85e6] [--quantity 5] [--repeats 5]
        [--trees before=/tmp/old-checkout ...]

Generates ``--quantity`` fp32 checkpoints (merge_benchmark.py's Llama layout), then takes turns,
``--repeats`` rounds: the I/O floor, measured in the same run (read every input file with 16 MiB
reads, then write and close a file the size of the output: what any merge must at least do, at
this machine's bandwidth now), and ``wsm-merge --quantity N`` as a subprocess (start-up and imports
count) with ``--workers 1`` and ``--workers 2`` (``--shard-size 0.1`` so there are shards to split).
Page cache warm, identities cached (one unmeasured run of each first). Reports medians and the
ratio merge / floor, and checks that both worker counts write the same bytes. ``--trees NAME=PATH``
adds ``wsm-merge --workers 1`` run from other source trees (``PYTHONPATH=PATH``, e.g. an export of
the commit before a change) to the same rounds, so before and after meet the same machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from merge_benchmark import BIN, make_series, run_measured  # noqa: E402

CHUNK = 16 * 1024**2


def io_floor(inputs: list[Path], out_bytes: int, scratch: Path) -> float:
    """Seconds to read ``inputs`` and write ``out_bytes`` (closed, not synced: as the merge does)."""
    started = time.perf_counter()
    buffer = bytearray(CHUNK)
    for path in inputs:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
    with open(scratch, "wb", buffering=0) as handle:
        left = out_bytes
        while left:
            left -= handle.write(memoryview(buffer)[:min(CHUNK, left)])
    took = time.perf_counter() - started
    scratch.unlink()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=85e6)
    parser.add_argument("--quantity", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trees", nargs="*", default=[], metavar="NAME=PATH",
                        help="also time --workers 1 from these source trees, in the same rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        work = Path(tmp)
        os.environ["WSM_IDENTITY_CACHE"] = str(work / "identity-cache")
        paths = make_series(work / "series", int(args.params), args.quantity, torch.float32)
        inputs = [p / "model.safetensors" for p in paths]
        out_bytes = inputs[-1].stat().st_size
        os.sync()
        merge = [str(BIN / "wsm-merge"), str(work / "series"), "--quantity", str(args.quantity), "--overwrite",
                 "--quiet", "--shard-size", "0.1"]
        commands = {f"--workers {p}": [*merge, "--workers", str(p), "--out", str(work / f"out-{p}")] for p in (1, 2)}
        for spec in args.trees:
            name, path = spec.split("=", 1)
            commands[name] = ["env", f"PYTHONPATH={Path(path).resolve()}", *merge, "--workers", "1", "--out",
                              str(work / f"out-{name}")]
        for cmd in commands.values():
            run_measured(cmd)  # warm-up: page cache, identity cache
            os.sync()
        floors, runs = [], {p: [] for p in commands}
        for _ in range(args.repeats):
            floors.append(io_floor(inputs, out_bytes, work / "floor.bin"))
            os.sync()
            for p, cmd in commands.items():
                runs[p].append(run_measured(cmd))
                os.sync()  # the next run does not pay for this one's writeback
        same = all((work / "out-1" / f.name).read_bytes() == f.read_bytes()
                   for f in sorted((work / "out-2").iterdir()) if f.name != "merge.json")
        floor = statistics.median(floors)
        print(f"{args.quantity} fp32 checkpoints of {out_bytes / 1e9:.2f} GB; I/O floor (read "
              f"{args.quantity * out_bytes / 1e9:.2f} GB + write {out_bytes / 1e9:.2f} GB) median {floor:.2f} s "
              f"(runs {', '.join(f'{f:.2f}' for f in floors)}); --workers 2 output identical to 1: {same}\n")
        print("| wsm-merge | median wall s | runs s | × I/O floor | peak anon MiB |\n|---|---|---|---|---|")
        for p, rs in runs.items():
            seconds = [r["seconds"] for r in rs]
            median = statistics.median(seconds)
            print(f"| {p} | {median:.2f} | {', '.join(f'{x:.2f}' for x in seconds)} | "
                  f"{median / floor:.2f} | {max(r['anon_mib'] for r in rs)} |")


if __name__ == "__main__":
    main()
