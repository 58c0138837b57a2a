"""Evaluation cost on the SmolLM2 test bed: a sweep staged vs not staged, and merge.keep=false vs true.

Real sweeps (``python -m wsm_exp``) over ``benchmarks/smollm2_testbed.py``'s series, each in its own
folder with its own empty merge and score caches (nothing one arm computed is reused by another):

- ``staged`` (``eval.staged=true``) and ``unstaged``: the same grid (default: D = N·Δ for
  N = 2, 4, 6, 10 at Δ = 100, × curve mean, 1-sqrt, ema = 12 variants, plus the raw last checkpoint)
  and suite (held-out bits per byte + ARC-Easy + PIQA). Before them one model is evaluated on each
  task at two documents (task data and code warm), and the staged arm runs first, so whatever warmth
  is left helps the unstaged one. Evaluation seconds and tokens are summed over the arm's score cache
  (each entry is one task computed once on one model in that arm, the screen pass's included; model
  loading excluded, the same count both ways); tokens do not depend on the machine's load, seconds
  do; wall seconds cover everything (merges too). ``eval.primary`` is held-out bpb by default: at
  CPU-affordable limits the test bed's downstream accuracies cannot tell merges apart (a standard
  error of ~0.05 at 100 questions against gaps of a few points), so verdicts on them read "at chance"
  unstaged and "not tested" staged (the merges they compare were screened out); ``--primary overall``
  shows that.
- ``keep-true`` and ``keep-false``: the same grid with evaluation cut to held-out bits per byte on
  ``--keep-docs`` documents, so the two differ in ``merge.keep`` only: wall seconds, merge seconds
  and bytes written to the merge cache per variant, and whether both score every model alike.

Writes a markdown report (``--out``, default ``<work>/staged_benchmark.md``) and prints it. Not a test:
the numbers depend on the machine and its load.

    .venv/bin/python benchmarks/staged_benchmark.py --work /tmp/wsm-staged --out /tmp/staged.md   # the measurement
    .venv/bin/python benchmarks/staged_benchmark.py --quantity 2,10 --curve mean --limit 2 --heldout-docs 4
    .venv/bin/python benchmarks/staged_benchmark.py --work /tmp/wsm-staged --arms keep   # rerun one pair
    .venv/bin/python benchmarks/staged_benchmark.py --keep-only   # one merge written vs in memory, no sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "wsm_exp"
TESTBED = CACHE / "smollm2-testbed"
KEY = ["variant", "task", "metric"]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def evaluated(scores: Path) -> dict[str, tuple[float, int]]:
    """task -> (seconds, tokens) summed over the task evaluations a score cache holds (one entry per task and model)."""
    out: dict[str, tuple[float, int]] = {}
    for entry in scores.glob("*/*.json"):
        first = json.loads(entry.read_text())["scores"][0]  # every metric of a task carries the task's run
        seconds, tokens = out.get(first["task"], (0.0, 0))
        out[first["task"]] = (seconds + first["seconds"], tokens + int(first.get("tokens") or 0))
    return out


def total(run: dict) -> tuple[float, int]:
    """(evaluation seconds, tokens evaluated) of an arm."""
    return sum(s for s, _ in run["evaluated"].values()), sum(t for _, t in run["evaluated"].values())


def sweep(work: Path, name: str, args: list[str]) -> dict:
    """Run one arm in ``work/name`` with its own merge and score caches; what the report needs of it."""
    merges, scores = work / f"{name}-merges", work / f"{name}-scores"
    for folder in (work / name, merges, scores):  # an arm always starts from empty caches
        shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "wsm_exp", f"paths.sweeps={work}", f"sweep_name={name}",
               f"paths.merges={merges}", f"paths.scores={scores}", *args]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command[3:])}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - started
    (work / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); log: {work / f'{name}.log'}\n{proc.stderr[-3000:]}")
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {wall:.0f} s", flush=True)
    (work / f"{name}.wall").write_text(f"{wall:.3f}\n")
    return collect(work, name)


def collect(work: Path, name: str) -> dict:
    """What the report needs of the finished arm ``work/name``: rows, screen, evaluations, merge bytes, verdicts."""
    folder, merges, wall = work / name, work / f"{name}-merges", float((work / f"{name}.wall").read_text())
    frame = pd.read_parquet(folder / "results.parquet")
    screen = json.loads((folder / "screen.json").read_text()) if (folder / "screen.json").is_file() else {}
    findings = folder / "tables" / "findings.csv"
    verdicts = pd.read_csv(findings) if findings.is_file() else pd.DataFrame(columns=["claim", "verdict"])
    stage = re.search(r"merge stage: (\d+) merged in one pass \(([\d.]+) s", (work / f"{name}.log").read_text())
    return {"name": name, "wall": wall, "frame": frame, "screen": screen,
            "evaluated": evaluated(work / f"{name}-scores"), "merges_bytes": folder_bytes(merges),
            "stage_seconds": float(stage.group(2)) if stage else 0.0,
            "verdicts": dict(zip(verdicts["claim"], verdicts["verdict"]))}


def merges_of(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["kind"] == "wsm"]


def best(frame: pd.DataFrame) -> tuple[str, str]:
    """(best merge by held-out bpb, best fully evaluated merge by mean accuracy over the other tasks)."""
    wsm = merges_of(frame)
    bpb = wsm[(wsm["task"] == "wsm_heldout_bpb") & (wsm["metric"] == "bits_per_byte")].set_index("variant")["value"]
    acc = wsm[(wsm["eval_stage"] == "full") & (wsm["metric"] == "acc")].groupby("variant")["value"].mean()
    show = (lambda s, pick: f"{pick(s)} ({s[pick(s)]:.4f})" if len(s) else "-")
    return show(bpb, pd.Series.idxmin), show(acc, pd.Series.idxmax)


def same_scores(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two arms scored the same models alike: values and model hashes, bit for bit."""
    columns = [*KEY, "value", "model_hash"]
    return a[columns].sort_values(KEY, ignore_index=True).equals(b[columns].sort_values(KEY, ignore_index=True))


def warm_up(series: Path, heldout: Path, tasks: list[str]) -> None:
    """Evaluate the last checkpoint on two documents of each task, no cache: task data and code warm for every arm."""
    from wsm_exp.evaluation import SuiteConfig, evaluate
    from wsm_exp.merging.series import load_series

    model = load_series(series).checkpoints[-1].path
    evaluate(model, SuiteConfig(tasks=["wsm_heldout_bpb", *tasks], limit=2), cache_dir=None,
             extra_data={"heldout": heldout})


def plan_line(common: list[str]) -> str:
    """The ``plan=true`` preview's evaluation cost line for the grid (nothing is run or written)."""
    proc = subprocess.run([sys.executable, "-m", "wsm_exp", *common, "plan=true", "sweep_name=staged-plan"],
                          cwd=ROOT, capture_output=True, text=True)
    lines = [x.strip() for x in (proc.stdout + proc.stderr).splitlines() if "evaluation cost" in x or "estimated" in x]
    return "; ".join(lines) or f"(plan=true printed no cost line; exit {proc.returncode})"


def report(args, runs: dict[str, dict], plan: str, loads: tuple) -> str:
    """The markdown report of the arms in ``runs`` (the staged pair, the merge.keep pair, or both)."""
    out = [f"# Evaluation cost on the SmolLM2 test bed ({time.strftime('%Y-%m-%d %H:%M')})", "",
           f"`{' '.join(sys.argv)}`", "",
           f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
           f"{loads[0]:.1f} before, {loads[1]:.1f} after; series {args.series}; held-out {args.heldout}.", "",
           f"Grid: merge.interval={args.interval} × merge.quantity={args.quantity} × merge.curve={args.curve}; "
           f"suite: wsm_heldout_bpb ({args.heldout_docs} documents) + {args.tasks} ({args.limit} each); "
           f"eval.primary={args.primary}.", "",
           f"Arms run now: {', '.join(n for n in runs if runs[n]['now']) or 'none'}; from an earlier run in this folder: "
           f"{', '.join(n for n in runs if not runs[n]['now']) or 'none'}.", "",
           f"plan=true: {plan}", ""]
    if "staged" in runs:
        out += staged_tables(runs["staged"], runs["unstaged"])
    if "keep-true" in runs:
        out += ["", keep_table(runs["keep-true"], runs["keep-false"], args.keep_docs)]
    return "\n".join(out) + "\n"


def staged_tables(staged: dict, unstaged: dict) -> list[str]:
    """Staged vs unstaged: cost, best merges, the screen's decisions, the verdicts side by side."""
    out = ["| arm | merges fully evaluated | wall s | evaluation s | tokens evaluated | screen pass s | "
           "best merge (held-out bpb) | best merge (accuracy) |", "|---|---|---|---|---|---|---|---|"]
    for run in (unstaged, staged):
        wsm = merges_of(run["frame"])
        full = wsm.loc[wsm["eval_stage"] == "full", "variant"].nunique()
        seconds, tokens = total(run)
        out.append(f"| {run['name']} | {full} / {wsm['variant'].nunique()} | {run['wall']:.0f} | {seconds:.0f} | "
                   f"{tokens:,} | {run['screen'].get('seconds', '-')} | {' | '.join(best(run['frame']))} |")
    ratio, token_ratio = (a / max(b, 1e-9) for a, b in zip(total(staged), total(unstaged)))
    claims = sorted(set(staged["verdicts"]) | set(unstaged["verdicts"]))
    agree = all(staged["verdicts"].get(c) == unstaged["verdicts"].get(c) for c in claims)
    out += ["", f"**staged / unstaged: evaluation seconds {ratio:.2f}×, tokens {token_ratio:.2f}×, wall "
            f"{staged['wall'] / unstaged['wall']:.2f}×; "
            f"same best merge: {best(staged['frame']) == best(unstaged['frame'])}; same verdicts: {agree}; "
            f"the staged arm's rows equal the unstaged arm's where both evaluated: "
            f"{same_scores(*common_rows(staged['frame'], unstaged['frame']))}.**", "",
            "Tokens/s by task (tokens / seconds over the arm's evaluations; the machine's speed while it ran): "
            + "; ".join(f"{run['name']} " + ", ".join(f"{task} {t / s:.0f}" for task, (s, t) in
                                                      sorted(run["evaluated"].items()) if s > 0)
                        for run in (unstaged, staged)) + ".", "",
            "Screen (held-out bpb, the staged arm's screen.json):", "",
            "| variant | bpb | ± se | stage | reason |", "|---|---|---|---|---|"]
    for name, entry in sorted(staged["screen"].get("variants", {}).items(), key=lambda kv: kv[1]["value"]):
        out.append(f"| {name} | {entry['value']:.4f} | {entry['stderr']:.4f} | {entry['stage']} | {entry['reason']} |")
    out += ["", "| claim | unstaged | staged |", "|---|---|---|"]
    return out + [f"| {c} | {unstaged['verdicts'].get(c, '-')} | {staged['verdicts'].get(c, '-')} |" for c in claims]


def common_rows(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of (variant, task, metric) present in both frames."""
    keys = a.set_index(KEY).index.intersection(b.set_index(KEY).index)
    return (f.set_index(KEY).loc[keys].reset_index() for f in (a, b))


def keep_table(kept: dict, memory: dict, docs: int) -> str:
    """merge.keep=true vs false per variant: wall, merge seconds, bytes written; the scores compared."""
    lines = [f"merge.keep (the grid, evaluation cut to held-out bpb on {docs} documents):", "",
             "| merge.keep | wall s per model | merge s per variant | bytes written per variant |",
             "|---|---|---|---|"]
    for keep, run in (("true", kept), ("false", memory)):
        wsm = merges_of(run["frame"]).drop_duplicates("variant")
        n, models = len(wsm), run["frame"]["variant"].nunique()
        seconds = run["stage_seconds"] + wsm["merge_seconds"].sum()  # keep=true: the stage's one pass
        lines.append(f"| {keep} | {run['wall'] / models:.1f} | {seconds / n:.1f} | {run['merges_bytes'] / n:,.0f} |")
    lines += ["", f"Same values and model hashes both ways: {same_scores(kept['frame'], memory['frame'])}."]
    return "\n".join(lines)


def keep_cost(series: Path, rounds: int = 2) -> None:
    """One variant (mean of 4 checkpoints, Δ = 200) written (merge.keep=true) vs merged into memory, back to back."""
    from wsm_exp.merging.cache import merge_or_reuse
    from wsm_exp.merging.memory_sink import merge_in_memory
    from wsm_exp.merging.plan import build_plan
    from wsm_exp.merging.series import load_series, select_window

    plan = build_plan(select_window(load_series(series), quantity=4, interval=200), curve="mean").identified()
    shard = 2048 * 2**20  # the sweep's default merge_shard_mib
    print("| round | keep=true: s, bytes written | keep=false: s, bytes written (bytes held) | same key |\n|---|---|---|---|")
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
    from wsm_exp.study import DataConfig, heldout_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, default=TESTBED, help="the test bed (benchmarks/smollm2_testbed.py)")
    parser.add_argument("--heldout", type=Path, default=heldout_path(DataConfig(), CACHE / "study-data"),
                        help="jsonl of {'text': ...} documents (default: the embedded study's held-out split)")
    parser.add_argument("--interval", type=int, default=100, help="Δ in steps (the test bed saves every 100)")
    parser.add_argument("--quantity", default="2,4,6,10", help="N values (D = N·Δ)")
    parser.add_argument("--curve", default="mean,1-sqrt,ema")
    parser.add_argument("--tasks", default="wsm_arc_easy,wsm_piqa", help="the full suite's tasks besides held-out bpb")
    parser.add_argument("--limit", type=int, default=100,
                        help="documents per task of the full suite (the screen's cost does not grow with it)")
    parser.add_argument("--heldout-docs", type=int, default=16, help="held-out documents (the screen)")
    parser.add_argument("--primary", default="heldout_bpb", choices=["heldout_bpb", "overall"],
                        help="eval.primary, what the verdicts judge (see the module docstring)")
    parser.add_argument("--keep-docs", type=int, default=2, help="held-out documents in the merge.keep arms")
    parser.add_argument("--arms", default="staged,keep", help="staged (staged and unstaged), keep (merge.keep "
                        "true and false), both, or none; arms of an earlier run in --work that are not run again are reported")
    parser.add_argument("--work", type=Path, default=None, help="folder for sweeps and caches (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=None, help="markdown report (default: <work>/staged_benchmark.md)")
    parser.add_argument("--keep-only", action="store_true", help="only one merge written vs in memory, no sweep")
    args = parser.parse_args()
    if not (args.series / "series.json").is_file():
        raise SystemExit(f"{args.series} is not a series: build the test bed first (benchmarks/smollm2_testbed.py).")
    if args.keep_only:
        return keep_cost(args.series)
    if set(args.arms.split(",")) - {"staged", "keep", "none"}:
        raise SystemExit(f"--arms {args.arms}: name staged, keep or both (comma-separated), or none (report only).")
    if not args.heldout.is_file():
        raise SystemExit(f"--heldout {args.heldout} does not exist: give a jsonl of held-out documents.")
    work = args.work or Path(tempfile.mkdtemp(prefix="wsm-staged-"))
    work.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks.split(",")
    grid = [f"series.path={args.series}", f"series.heldout={args.heldout}", "logger=none", "+sweep=quantity",
            "baselines.wsd_shapes=[]", f"merge.interval={args.interval}", f"merge.quantity={args.quantity}",
            f"merge.curve={args.curve}"]
    common = [*grid, "eval=benchmarks", f"eval.tasks=[wsm_heldout_bpb,{args.tasks}]", f"eval.limit={args.limit}",
              f"+eval.limits.wsm_heldout_bpb={args.heldout_docs}", f"eval.primary={args.primary}"]
    loads = [os.getloadavg()[0]]
    plan = plan_line([f"paths.sweeps={work}", *common])
    warm_up(args.series, args.heldout, tasks)
    cheap = [*grid, "eval=benchmarks", "eval.tasks=[wsm_heldout_bpb]", f"eval.limit={args.keep_docs}",
             "eval.primary=heldout_bpb"]  # the one task there is
    arms = {"staged": {"staged": [*common, "eval.staged=true"], "unstaged": common},
            "keep": {"keep-true": [*cheap, "merge.keep=true"], "keep-false": [*cheap, "merge.keep=false"]}}
    runs = {}
    for arm, sweeps in arms.items():
        for name, overrides in sweeps.items():
            if arm in args.arms.split(","):
                runs[name] = {**sweep(work, name, overrides), "now": True}
            elif (work / f"{name}.wall").is_file():
                runs[name] = {**collect(work, name), "now": False}
    loads.append(os.getloadavg()[0])
    text = report(args, runs, plan, tuple(loads))
    out = args.out or work / "staged_benchmark.md"
    out.write_text(text)
    print(text + f"\nwritten: {out}\nwork folder: {work}")


if __name__ == "__main__":
    main()
