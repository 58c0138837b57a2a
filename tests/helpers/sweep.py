"""Run real `python -m wsm_exp` sweeps on a reduced tiny setting and read their outputs back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

# A reduced embedded study: a very small model, a short stage 1 and a 32-step branch saved every 4
# steps, so every sweep runs in seconds once the study is trained (once per test session).
MICRO = [
    "model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=1",
    "model.num_attention_heads=2", "model.num_key_value_heads=2",
    "data.max_chars_general=400000", "data.max_chars_anneal=200000", "data.vocab_size=512", "data.heldout_docs=20",
    "train.batch_size=4", "train.seq_len=64", "train.warmup_steps=4", "train.switch_step=24",
    "train.branch_steps=32", "train.save_every=4",
    "eval.limit=8", "eval.limits={}", "eval.tasks=[wsm_heldout_bpb,wsm_piqa,wsm_arc_easy]",
]


@dataclass
class SweepRun:
    returncode: int
    stdout: str
    stderr: str
    sweep_dir: Path

    def results(self) -> pd.DataFrame:
        return pd.read_parquet(self.sweep_dir / "results.parquet")


def run_sweep(tmp_root: Path, *overrides: str, name: str, cache: Path, timeout: int = 600,
              fresh_results_cache: bool = False) -> SweepRun:
    """Run the real entry point in a subprocess; ``cache`` holds the shared trained study."""
    args = [f"paths.sweeps={tmp_root}", f"paths.cache={cache}", f"sweep_name={name}", *MICRO, *overrides]
    if fresh_results_cache:
        args += [f"paths.merges={tmp_root}/{name}-merges", f"paths.scores={tmp_root}/{name}-scores"]
    proc = subprocess.run([sys.executable, "-m", "wsm_exp", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return SweepRun(proc.returncode, proc.stdout, proc.stderr, tmp_root / name)


def micro_branch(cache: Path, branch: str) -> Path:
    """A branch folder of the MICRO study, seed 0 (the session cache also holds other studies' branches)."""
    micro = {o.split("=")[0].split(".")[1]: int(o.split("=")[1]) for o in MICRO if o.startswith("train.")}
    for path in (cache / "studies").rglob("series.json"):
        meta = json.loads(path.read_text())
        train = meta["config"]["train"]
        if meta["branch"] == branch and meta["seed"] == 0 and all(train[k] == v for k, v in micro.items()):
            return path.parent
    raise AssertionError(f"no {branch} branch of the MICRO study in {cache}")


def micro_study(root: Path, cache: Path) -> tuple[Path, Path]:
    """The MICRO study's WSM series (trained into ``cache`` unless it is there) and its held-out file,
    to use as a user's own series (``series.path``, ``series.heldout``)."""
    from hydra import compose, initialize_config_dir

    import wsm_exp.__main__  # noqa: F401  (registers the schemas and the ${cwd:} resolver)
    from wsm_exp.sweep.planning.sources import EmbeddedSource

    trained = run_sweep(root, "merge.quantity=2", "baselines.wsd_shapes=[]", "logger=none", "eval.tasks=[wsm_piqa]",
                        name="micro-study", cache=cache)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-4000:]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"paths.sweeps={root}", f"paths.cache={cache}", *MICRO])
    return micro_branch(cache, "wsm"), EmbeddedSource.from_cfg(cfg).heldout()


def wandb_runs(sweep_dir: Path, only: str = "") -> dict[str, dict]:
    """Every offline W&B run of a sweep (or those whose folder names ``only``, e.g. a variant), read back with the
    wandb CLI (one process per run: seconds each): name -> inspect JSON."""
    runs = {}
    for run_dir in sorted((sweep_dir / "wandb").glob(f"offline-run-*{only}*" if only else "offline-run-*")):
        out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary",
                              "--json", str(run_dir)], capture_output=True, text=True, check=True)
        record = json.loads(out.stdout)
        runs[record["name"]] = record
    return runs
