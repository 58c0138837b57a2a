"""Evaluation cost of a 12-variant sweep on the SmolLM2 test bed: eval.staged and merge.keep, back to back.

Runs three real sweeps (``python -m wsm_exp``) over ``benchmarks/smollm2_testbed.py``'s series, each
with an empty score cache: (1) ``merge.keep=false`` unstaged, (2) ``merge.keep=true`` unstaged (fresh
merge cache), (3) ``eval.staged=true`` reusing (2)'s merges, so (2) vs (3) differ in evaluation only.
Prints wall time, evaluation seconds (rows' eval_seconds plus the screen pass), bytes written to the
merge cache, the best variant and the findings of each. Not a test: numbers depend on the machine.

    .venv/bin/python benchmarks/staged_benchmark.py --heldout <held-out.jsonl> [--limit 20 --heldout-docs 16]
    .venv/bin/python benchmarks/staged_benchmark.py --heldout x --keep-only   # merge.keep alone, no evaluation
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TESTBED = Path.home() / ".cache" / "wsm_exp" / "smollm2-testbed"


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run(work: Path, name: str, args: list[str], merges: Path) -> dict:
    scores = work / f"{name}-scores"
    command = [sys.executable, "-m", "wsm_exp", f"paths.sweeps={work}", f"sweep_name={name}",
               f"paths.merges={merges}", f"paths.scores={scores}", *args]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    frame = pd.read_parquet(work / name / "results.parquet")
    screen_path = work / name / "screen.json"
    screen = json.loads(screen_path.read_text()) if screen_path.is_file() else {}
    findings = pd.read_csv(work / name / "tables" / "findings.csv") if (work / name / "tables" / "findings.csv").is_file() \
        else pd.DataFrame()
    merges_only = frame[frame["kind"] == "wsm"]
    heldout = merges_only[merges_only["task"] == "wsm_heldout_bpb"].set_index("variant")["value"]
    full = merges_only[merges_only["eval_stage"] == "full"]
    acc = full[full["metric"].isin(["acc", "acc_norm"])].groupby("variant")["value"].mean()
    return {"name": name, "wall": wall, "eval_seconds": frame["eval_seconds"].sum() + screen.get("seconds", 0.0),
            "merge_seconds": frame.drop_duplicates("variant")["merge_seconds"].sum(),
            "merges_bytes": folder_bytes(merges), "full": full["variant"].nunique(),
            "variants": merges_only["variant"].nunique(), "best_bpb": heldout.idxmin(),
            "best_acc": acc.idxmax() if len(acc) else "",
            "verdicts": dict(zip(findings.get("claim", []), findings.get("verdict", [])))}


def keep_cost(rounds: int = 2) -> None:
    """One variant (mean of 4 checkpoints, Δ = 200) written (merge.keep=true) vs merged into memory, back to back."""
    import shutil

    from wsm_exp.merging.cache import merge_or_reuse
    from wsm_exp.merging.memory_sink import merge_in_memory
    from wsm_exp.merging.plan import build_plan
    from wsm_exp.merging.series import load_series, select_window

    plan = build_plan(select_window(load_series(TESTBED), quantity=4, interval=200), curve="mean").identified()
    shard = 2048 * 2**20  # the sweep's default merge_shard_mib
    for round_ in range(1, rounds + 1):
        out = Path(tempfile.mkdtemp(prefix="keep-"))
        started = time.perf_counter()
        written = merge_or_reuse(plan, out, shard_size_bytes=shard, progress=False)
        kept_s, size = time.perf_counter() - started, folder_bytes(out)
        started = time.perf_counter()
        with merge_in_memory(plan, shard_size_bytes=shard, progress=False) as merged:
            memory_s, held, same = time.perf_counter() - started, merged.nbytes(), merged.key == written.key
        shutil.rmtree(out)
        print(f"| {round_} | {kept_s:.1f} s, {size:,} | {memory_s:.1f} s, 0 ({held:,}) | {'yes' if same else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", required=True, help="jsonl of {'text': ...} held-out documents")
    parser.add_argument("--limit", type=int, default=20, help="documents per benchmark task")
    parser.add_argument("--heldout-docs", type=int, default=16)
    parser.add_argument("--work", default=None, help="folder for sweeps and caches (default: a new temporary one)")
    parser.add_argument("--keep-only", action="store_true", help="only merge.keep: one merge written vs in memory")
    args = parser.parse_args()
    if args.keep_only:
        return keep_cost()
    work = Path(args.work or tempfile.mkdtemp(prefix="wsm-staged-"))
    common = [f"series.path={TESTBED}", f"series.heldout={args.heldout}", "logger=none", "eval=benchmarks",
              "eval.tasks=[wsm_heldout_bpb,wsm_arc_easy,wsm_piqa]", f"eval.limit={args.limit}",
              f"+eval.limits.wsm_heldout_bpb={args.heldout_docs}", "baselines.wsd_shapes=[]",
              "hydra.mode=MULTIRUN", "merge.quantity=2,4", "merge.duration=400,800", "merge.curve=mean,1-sqrt,ema"]
    rows = [run(work, "keep-false", [*common, "merge.keep=false"], work / "merges-false"),
            run(work, "unstaged", common, work / "merges"),
            run(work, "staged", [*common, "eval.staged=true"], work / "merges")]
    print("| run | variants fully evaluated | wall s | evaluation s | merge s | merge cache bytes | best (bpb) | "
          "best (acc) |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['full']} / {r['variants']} | {r['wall']:.0f} | {r['eval_seconds']:.0f} | "
              f"{r['merge_seconds']:.1f} | {r['merges_bytes']} | {r['best_bpb']} | {r['best_acc']} |")
    unstaged, staged = rows[1], rows[2]
    print(f"\nstaged / unstaged evaluation time: {staged['eval_seconds'] / unstaged['eval_seconds']:.2f}; "
          f"same verdicts: {staged['verdicts'] == unstaged['verdicts']}")
    for r in rows:
        print(r["name"], r["verdicts"])
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
