"""The README's own-checkpoint example, run as written on a generated series.

Only the example's paths (series, held-out text, WSD run) and the window's sizes (steps of a 32-step
branch instead of a real run's thousands) are replaced; every other word of the command runs as printed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pandas as pd
import pytest

from helpers.sweep import MICRO, ROOT, micro_branch, micro_study, run_sweep

pytestmark = pytest.mark.slow  # real sweeps on the micro study


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
    return "\n".join(line for line in block.splitlines() if not line.startswith("```")).replace("\\\n", " ")


def run_as_written(command: str, replace: dict[str, str], extra: list[str]) -> subprocess.CompletedProcess:
    for old, new in replace.items():
        assert old in command, f"the README example no longer contains {old!r}"
        command = command.replace(old, new)
    argv = shlex.split(command)
    assert argv[:3] == [".venv/bin/python", "-m", "wsm_exp"], argv[:3]
    return subprocess.run([sys.executable, *argv[1:], *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


def test_readme_own_checkpoint_example_runs_as_written(root, cache):
    series, heldout = micro_study(root, cache)
    trained = run_sweep(root, "merge.quantity=2", "logger=none", "eval.tasks=[wsm_piqa]", name="micro-wsd", cache=cache)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]  # trains the 1-sqrt WSD branch
    wsd = micro_branch(cache, "wsd_1-sqrt")
    command = readme_block("own-checkpoints")
    scale = ["merge.duration=16", "merge.interval=4,8", f"paths.sweeps={root}", f"paths.cache={cache}",
             *[o for o in MICRO if o.startswith("eval.")], "eval.tasks=[wsm_heldout_bpb,wsm_arc_easy]"]
    paths = {"/ckpts/my-run/constant": str(series), "/ckpts/my-run/heldout.jsonl": str(heldout)}
    done = run_as_written(command, {**paths, "/ckpts/my-run/wsd-1sqrt": str(wsd)}, scale)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    frame = pd.read_parquet(root / "my-interval" / "results.parquet")
    assert set(frame["status"]) == {"ok"}
    assert {"wsm", "wsd", "raw"} <= set(frame["kind"])
    assert set(frame.loc[frame["kind"] == "wsm", "interval_steps"]) == {4, 8}
    assert "wsm_heldout_bpb" in set(frame["task"]) and "bits_per_byte" in set(frame["metric"])
    assert list((root / "my-interval" / "wandb").glob("offline-run-*")), "no offline W&B runs where the README says"
    # the README's "No WSD run?" advice: drop series.wsd, set baselines.wsd_shapes=[]
    no_wsd = command.split("'series.wsd=")[0] + "baselines.wsd_shapes=[] " + command.split("baselines.wsd_shapes=[1-sqrt]")[1]
    done = run_as_written(no_wsd.replace("my-interval", "my-interval-nowsd"), {k: v for k, v in paths.items()
                                                                              if "wsd" not in k}, scale)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    frame = pd.read_parquet(root / "my-interval-nowsd" / "results.parquet")
    assert "wsd" not in set(frame["kind"]) and {"wsm", "raw"} <= set(frame["kind"])
    report = (root / "my-interval-nowsd" / "report.md").read_text()
    assert "not tested" in report.lower()
