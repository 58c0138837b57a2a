"""Several merges in one pass vs one wsm-merge per merge: wall time, bytes read, memory, equality.

    .venv/bin/python benchmarks/multi_merge_benchmark.py [--params 100e6] [--steps 8] [--repeats 3]

Generates ``--steps`` fp32 checkpoints (merge_benchmark.py's Llama layout), then merges the grid
``--curves`` × ``--quantities`` (default mean,1-sqrt × 2,4,8: six merges over the union of the 8
newest checkpoints) two ways, taking turns: one ``wsm-merge --curve a,b --quantity 2,4,8`` (one
streaming pass, each input tensor read once), and one ``wsm-merge`` per merge (timed as their
sum, and the largest alone). Page cache warm, identities cached (an unmeasured warm-up of each
runs first). With ``--cold`` the page cache is dropped before every timed run and every floor
(root only): the inputs come from disk, as checkpoints larger than memory do on a cluster. Reports
the median wall time, GB of checkpoint tensors read (the merger's own count, printed by
``wsm-merge``, beside the unique input bytes), peak anonymous memory, the pass's time over the
largest single merge's, and whether every output of the pass equals the separate merge bit for bit. The sweep's merge stage (wsm_exp.sweep.stage.merge_stage) runs the same pass.
Not a test: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from identity_benchmark import drop_page_cache  # noqa: E402
from io_floor_benchmark import io_floor  # noqa: E402
from merge_benchmark import BIN, load_output, make_series, run_measured  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=100e6, help="parameters per checkpoint")
    parser.add_argument("--steps", type=int, default=8, help="checkpoints in the series")
    parser.add_argument("--curves", default="mean,1-sqrt")
    parser.add_argument("--quantities", default="2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each timed run (root)")
    args = parser.parse_args()
    if args.cold and not drop_page_cache():
        parser.error("--cold needs root: /proc/sys/vm/drop_caches is not writable")

    def settle() -> None:
        """Before a timed run: no writeback of the previous one is pending; with --cold, no input cached."""
        if args.cold:
            drop_page_cache()  # syncs first
        else:
            os.sync()

    curves, quantities = args.curves.split(","), [int(q) for q in args.quantities.split(",")]
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        work = Path(tmp)
        os.environ["WSM_IDENTITY_CACHE"] = str(work / "identity-cache")
        paths = make_series(work / "series", int(args.params), args.steps, torch.float32)
        per_checkpoint = (paths[0] / "model.safetensors").stat().st_size
        os.sync()
        merge = [str(BIN / "wsm-merge"), str(work / "series"), "--overwrite", "--quiet"]
        one_pass = [*merge, "--curve", args.curves, "--quantity", args.quantities, "--out", str(work / "grid")]
        separate = {f"{'linear' if c == 'mean' else c}-N{q}": [*merge, "--curve", c, "--quantity", str(q), "--out",
                                                                  str(work / "alone" / f"{c}-{q}")]
                    for c, q in itertools.product(curves, quantities)}
        for cmd in (one_pass, *separate.values()):
            run_measured(cmd)  # warm-up: page cache, identity cache
            os.sync()
        runs: dict[str, list[tuple[float, int, float]]] = {"one pass": [], "separate": [], "largest alone": []}
        newest = [p / "model.safetensors" for p in paths[-max(quantities):]]
        floors: dict[str, list[float]] = {"one pass": [], "largest alone": []}
        for _ in range(args.repeats):
            # the I/O floor of each: read the unique inputs, write its outputs (the pass writes one per merge)
            settle()
            floors["one pass"].append(io_floor(newest, len(separate) * per_checkpoint, work / "floor.bin"))
            settle()
            floors["largest alone"].append(io_floor(newest, per_checkpoint, work / "floor.bin"))
            settle()
            r = run_measured(one_pass)
            runs["one pass"].append((r["seconds"], r["anon_mib"], _gb_read(r["stdout"])))
            rs = []
            for cmd in separate.values():
                settle()
                rs.append(run_measured(cmd))
            runs["separate"].append((sum(x["seconds"] for x in rs), max(x["anon_mib"] for x in rs),
                                     sum(_gb_read(x["stdout"]) for x in rs)))
            largest = max(rs, key=lambda x: _gb_read(x["stdout"]))  # the merge of the most checkpoints
            runs["largest alone"].append((largest["seconds"], largest["anon_mib"], _gb_read(largest["stdout"])))
        equal = True
        for name, (c, q) in zip(separate, itertools.product(curves, quantities)):
            a, b = load_output(next((work / "grid").glob(f"{name}-*"))), load_output(work / "alone" / f"{c}-{q}")
            equal &= a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
        unique = min(args.steps, max(quantities)) * per_checkpoint
        print(f"{len(separate)} merges ({args.curves} × N = {args.quantities}) of {per_checkpoint / 1e9:.2f} GB "
              f"fp32 checkpoints; unique input bytes {unique / 1e9:.2f} GB (files, headers included); every "
              f"output of the pass equal to its separate merge: {equal}; page cache "
              f"{'dropped before each timed run (inputs from disk)' if args.cold else 'warm'}\n")
        print("| way | median wall s | GB of tensors read | peak anon MiB |\n|---|---|---|---|")
        medians = {}
        for way, values in runs.items():
            medians[way] = statistics.median(v[0] for v in values)
            print(f"| {way} | {medians[way]:.2f} | {statistics.median(v[2] for v in values):.3f} | "
                  f"{max(v[1] for v in values)} |")
        print(f"\none pass / largest alone: {medians['one pass'] / medians['largest alone']:.2f}×; "
              f"one pass / separate: {medians['one pass'] / medians['separate']:.2f}×")
        for way, values in floors.items():
            floor = statistics.median(values)
            print(f"{way}: I/O floor (read the unique inputs, write its outputs) median {floor:.2f} s; "
                  f"wall / floor {medians[way] / floor:.2f}×")


def _gb_read(stdout: str) -> float:
    """The GB of checkpoint tensors a wsm-merge run reports having read."""
    return float(re.search(r"([0-9.]+) GB read", stdout).group(1))


if __name__ == "__main__":
    main()
