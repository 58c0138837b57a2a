"""End-to-end sweeps through the real entry point: Hydra multiruns, training, merging, lm-eval, W&B.

The embedded study is trained once per session into a shared cache; each test runs real
`python -m wsm_exp +sweep=...` subprocesses on a reduced tiny setting and checks what they wrote.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from helpers.sweep import MICRO, ROOT, micro_branch, run_sweep, wandb_runs

pytestmark = pytest.mark.slow  # real subprocess sweeps: minutes in all


@pytest.fixture(scope="module")
def duration(root, cache):
    run = run_sweep(root, "+sweep=duration", "merge.quantity=2", "merge.duration=8,16,32", name="duration", cache=cache)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return run


def ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"]


def test_duration_sweep_writes_results_report_and_wandb(duration):
    frame = duration.results()
    assert duration.stdout.strip().splitlines()[-1] == f"Sweep folder: {duration.sweep_dir}"
    assert set(frame["status"]) == {"ok"}
    merges = frame[frame["kind"] == "wsm"]
    assert sorted(merges["duration_steps"].unique()) == [8, 16, 32]
    assert set(merges["quantity"]) == {2}
    assert sorted(merges["interval_steps"].unique()) == [4, 8, 16]  # Δ = D/N
    for _, row in merges.drop_duplicates("variant").iterrows():
        steps, weights = json.loads(row["steps"]), json.loads(row["weights"])
        assert len(steps) == 2 and math.isclose(sum(weights), 1.0, abs_tol=1e-9)
        assert steps[-1] - steps[0] == row["interval_steps"]
        assert row["duration_steps"] == 2 * row["interval_steps"]
    kinds = set(frame["kind"])
    assert kinds == {"wsm", "raw", "wsd"}
    # baselines: the WSD branch end and the raw last checkpoint, evaluated once
    assert frame[frame["kind"] == "wsd"]["variant"].str.startswith("wsd-1-sqrt-").all()
    assert frame.groupby(["variant", "task", "metric"]).size().max() == 1
    # the held-out loss is measured for every model
    heldout = ok(frame)[ok(frame)["category"] == "heldout"]
    assert set(heldout["variant"]) == set(frame["variant"])
    assert (heldout["value"] > 0).all()
    # every score says which harness, task version and task definitions produced it
    assert (frame["harness_version"] != "").all() and (frame["task_version"] != "").all()
    assert frame["task_hash"].str.fullmatch(r"[0-9a-f]{16}").all()
    # report and CSV twin; per-document values of every model, so one seed still gets a paired verdict
    assert (duration.sweep_dir / "report.md").is_file()
    for model_hash in frame["model_hash"].unique():
        samples = pd.read_parquet(duration.sweep_dir / "samples" / f"{model_hash}.parquet")
        assert set(samples["task"]) == set(frame["task"])
    claims = pd.read_csv(duration.sweep_dir / "tables" / "findings.csv").set_index("claim")
    assert claims.loc["WSM beats WSD", "noise"].startswith("evaluation noise only")
    assert not claims.loc["WSM beats WSD", "verdict"].startswith("unconfirmed")
    assert len(pd.read_csv(duration.sweep_dir / "results.csv")) == len(frame)


def test_wandb_runs_match_results_table(duration):
    frame = duration.results()
    runs = wandb_runs(duration.sweep_dir)
    for variant, rows in frame.groupby("variant"):
        run = runs[variant]
        assert run["state"] == "finished"
        assert run["config"]["quantity"] == int(rows["quantity"].iloc[0])
        assert run["config"]["steps"] == json.loads(rows["steps"].iloc[0])
        for _, row in rows.iterrows():
            assert run["summary"][f"eval/{row['task']}/{row['metric']}"] == pytest.approx(row["value"])
    summary = runs["duration-summary"]
    assert summary["summary"]["variants"] == frame["variant"].nunique()
    assert summary["summary"]["results"]["nrows"] == len(frame)
    assert summary["summary"]["report/table1"]["_type"] == "table-file"  # the report is logged too


def test_rerun_recomputes_nothing(duration, root, cache):
    jobs = {p: p.stat().st_mtime_ns for p in (duration.sweep_dir / "jobs").glob("*.json")}
    wandb_before = sorted(p.name for p in (duration.sweep_dir / "wandb").glob("offline-run-*"))
    again = run_sweep(root, "+sweep=duration", "merge.quantity=2", "merge.duration=8,16,32", name="duration", cache=cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (duration.sweep_dir / "jobs").glob("*.json")} == jobs
    runs_after = sorted(p.name for p in (duration.sweep_dir / "wandb").glob("offline-run-*"))
    # variant runs are untouched; only the summary run is rewritten (same id, so no duplicate)
    assert len(runs_after) == len(wandb_before)
    pd.testing.assert_frame_equal(again.results(), duration.results())


@pytest.mark.parametrize(
    "sweep, overrides, expect",
    [
        ("quantity", ["merge.interval=4", "merge.quantity=1,2,4"], {"quantity": [1, 2, 4]}),
        ("interval", ["merge.duration=16", "merge.interval=4,8,16"], {"quantity": [4, 2, 1]}),
        ("grid", ["merge.interval=4,8", "merge.quantity=2,4"], {"quantity": [2, 2, 4, 4]}),
        ("method", ["merge.duration=16", "merge.interval=4", "merge.curve=1-sqrt,ema,ema_alpha"],
         {"curve": ["1-sqrt", "ema", "ema_alpha"]}),
        ("wsd_vs_wsm", ["merge.duration=32", "merge.interval=4", "merge.curve=mean,1-sqrt",
                        "baselines.wsd_shapes=[1-sqrt,linear]"], {"curve": ["mean", "1-sqrt"]}),
        ("fidelity", ["merge.duration=8", "merge.interval=4", "merge.end=-8,0"], {"end_offset": [-8, 0]}),
        ("decay_then_merge", ["merge.duration=8,16", "merge.quantity=2"], {"decay_merges": 2}),
        ("merge_then_decay", ["merge.quantity=2", "merge.interval=4", "merge.end=-8"], {}),
    ],
)
def test_every_sweep_runs_end_to_end(root, cache, duration, sweep, overrides, expect):
    lighter = [] if sweep in ("wsd_vs_wsm", "fidelity") else ["baselines.matched_tokens=false"]
    run = run_sweep(root, f"+sweep={sweep}", *overrides, *lighter, "logger=none", name=sweep, cache=cache)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    frame = run.results()
    assert set(frame["status"]) == {"ok"}
    merges = frame[frame["kind"] == "wsm"].drop_duplicates("variant")
    if "quantity" in expect:
        assert sorted(merges["quantity"]) == sorted(expect["quantity"])
    if "curve" in expect:
        assert sorted(merges["curve"]) == sorted(expect["curve"])
    if sweep == "wsd_vs_wsm":
        assert {"wsd_1-sqrt", "wsd_linear"} <= set(frame["branch"])
    if sweep == "fidelity":
        fidelity = frame[frame["branch"].str.startswith("fidelity_")].drop_duplicates("variant")
        assert len(fidelity) == 2 and set(fidelity["duration_steps"]) == {8}
        assert sorted(fidelity["end_step"]) == sorted(merges["end_step"])
    if sweep == "decay_then_merge":
        inside = frame[frame["kind"] == "decay_merge"].drop_duplicates("variant")
        assert len(inside) == expect["decay_merges"] and set(inside["branch"]) == {"wsd_1-sqrt"}
        assert set(inside["end_step"]) == {frame.loc[frame["kind"] == "wsd", "end_step"].max()}
        assert "decay-then-merge gives no gain over the decay" in (run.sweep_dir / "report.md").read_text()
    if sweep == "merge_then_decay":
        _check_merge_then_decay(frame, merges, cache)
        assert "merge-then-decay gives no gain" in (run.sweep_dir / "report.md").read_text()
    assert (run.sweep_dir / "report.md").is_file()


def _check_merge_then_decay(frame, merges, cache):
    """One decay from the merge and one from its newest checkpoint, same length, same end; the first
    really starts from the merged weights."""
    (merge,) = merges.itertuples()
    after = frame[frame["kind"] == "merge_then_decay"].drop_duplicates("variant")
    plain = frame[frame["branch"].str.startswith("fidelity_")].drop_duplicates("variant")
    assert len(after) == 1 and len(plain) == 1
    end = merge.end_step + merge.duration_steps
    assert after["end_step"].iloc[0] == plain["end_step"].iloc[0] == end
    assert plain["branch"].iloc[0] == f"fidelity_E{end}_D{merge.duration_steps}"
    (series,) = (cache / "studies").glob(f"*/{after['branch'].iloc[0]}/series.json")
    parent = json.loads((Path(json.loads(series.read_text())["parent"]) / "merge.json").read_text())
    assert parent["steps"] == json.loads(merge.steps)
    assert parent["weights"] == pytest.approx(json.loads(merge.weights))
    loss = frame[frame["metric"] == "bits_per_byte"].set_index("variant")["value"]
    assert loss[after["variant"].iloc[0]] != loss[plain["variant"].iloc[0]]  # another start, another model


@pytest.mark.parametrize("launcher", [
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
])
def test_parallel_launchers_match_sequential(root, cache, duration, launcher):
    name = "par-" + launcher[0].split("=")[1]
    run = run_sweep(root, "+sweep=duration", "merge.quantity=2", "merge.duration=8,16,32", *launcher, "logger=none",
                    name=name, cache=cache, fresh_results_cache=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    cols = ["variant", "task", "metric", "value", "model_hash", "steps", "weights"]
    ours = run.results()[cols].sort_values(cols[:3], ignore_index=True)
    sequential = duration.results()[cols].sort_values(cols[:3], ignore_index=True)
    pd.testing.assert_frame_equal(ours, sequential, check_exact=False, rtol=1e-5)
    assert run.results()["eval_seconds"].sum() > 0  # really evaluated, not read from the shared cache


def test_bad_overrides_fail_before_any_work(root, cache, duration):
    for overrides, must_say in [
        (["merge.curve=exponential"], ["merge.curve", "1-sqrt", "cosine"]),
        # one good and one bad job: the good one must not start either
        (["merge.duration=8,10", "merge.quantity=null", "merge.interval=4"], ["merge.", "10", "not started"]),
        (["merge.quantity=100"], ["merge.", "N=100"]),
        (["merge.duration=128"], ["merge.", "Available steps"]),
        (["merge.quantitiy=4"], ["quantitiy"]),
        (["merge.branch=stage1"], ["merge.branch", "wsd_1-sqrt"]),
        (["eval.categories.wsm_piqa=general-knowledge"], ["eval.categories.wsm_piqa", "general_knowledge"]),
        (["baselines.merge_then_decay=true", "merge.end=0"], ["merge.end", "merge-then-decay", "past the branch end"]),
    ]:
        fresh = root / "never-trained"
        run = run_sweep(root, "+sweep=duration", *overrides, name="bad", cache=fresh)
        assert run.returncode != 0
        text = run.stdout + run.stderr
        for needle in must_say:
            assert needle in text, (needle, text[-3000:])
        assert not fresh.exists(), "nothing may be trained before the sweep is checked"
        assert not (root / "bad" / "jobs").exists()


def test_a_sweep_folder_holds_one_study_and_suite(root, cache, duration):
    """Rows of another study would be mixed into (or replace) this folder's: refused before any work."""
    fresh = root / "never-trained-2"
    before = sorted(p.name for p in (duration.sweep_dir / "jobs").iterdir())
    run = run_sweep(root, "+sweep=duration", "merge.quantity=2", "merge.duration=8", "model.hidden_size=32,48",
                    name="duration", cache=fresh)
    text = run.stdout + run.stderr
    assert run.returncode == 2, text[-3000:]
    assert "already holds results of another study or eval suite" in text  # the hidden_size=48 job
    assert "train or evaluate different studies or suites" in text  # 32 and 48 in one sweep
    assert not fresh.exists()
    assert sorted(p.name for p in (duration.sweep_dir / "jobs").iterdir()) == before
    assert "hidden_size" in (duration.sweep_dir / "sweep.json").read_text()


def _user_series(cache, dest, nan_step):
    """A user's series: copies of the trained WSM checkpoints, one of them corrupted with a NaN."""
    shutil.copytree(micro_branch(cache, "wsm"), dest)
    weights = dest / f"step_{nan_step}" / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    return dest


def test_failing_variant_does_not_sink_the_sweep_and_user_series_work(root, cache, duration):
    steps = sorted(int(p.name.split("_")[1]) for p in micro_branch(cache, "wsm").glob("step_*"))
    series = _user_series(cache, root / "user-series", nan_step=steps[-1])
    refused = run_sweep(root, f"series.path={series}", "baselines.wsd_shapes=[]", "merge.quantity=2", name="user0",
                        cache=cache)
    assert refused.returncode != 0 and "series.heldout" in refused.stdout + refused.stderr
    # the user's WSD run stopped one checkpoint before the constant-LR run: its own end is the baseline
    shutil.copytree(micro_branch(cache, "wsd_1-sqrt"), root / "user-wsd", ignore=shutil.ignore_patterns(f"step_{steps[-1]}"))
    run = run_sweep(root, f"series.path={series}", f"series.wsd={{1-sqrt:{root / 'user-wsd'}}}",
                    "series.wsd_decay_steps=28", "baselines.raw_last=false", "eval.tasks=[wsm_piqa]",
                    "baselines.matched_tokens=false", "merge.interval=4",
                    "merge.quantity=2", f"merge.end={steps[-1]},{steps[-2]}", "-m", name="user", cache=cache)
    assert run.returncode == 1, run.stderr[-3000:]
    frame = run.results()
    baseline = frame[frame["kind"] == "wsd"]
    assert set(baseline["variant"]) == {f"wsd-1-sqrt-E{steps[-2]}-s0"} and set(baseline["status"]) == {"ok"}
    assert set(baseline["duration_steps"]) == {28}
    failed = frame[frame["status"] == "failed"]
    assert set(failed["variant"]) == {f"wsm-mean-N2-I4-E{steps[-1]}-s0"}
    assert "NaN" in failed["error"].iloc[0] or "nan" in failed["error"].iloc[0].lower()
    assert f"FAILED wsm-mean-N2-I4-E{steps[-1]}-s0" in run.stdout
    good = frame[frame["variant"] == f"wsm-mean-N2-I4-E{steps[-2]}-s0"]
    assert not good.empty and set(good["status"]) == {"ok"}


def test_killed_sweep_resumes_without_loss_or_duplicates(root, cache, duration):
    args = [sys.executable, "-m", "wsm_exp", f"paths.sweeps={root}", f"paths.cache={cache}", "sweep_name=killed",
            f"paths.merges={root}/killed-merges", f"paths.scores={root}/killed-scores", *MICRO,
            "+sweep=quantity", "merge.interval=4", "merge.quantity=1,2,4,8"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    jobs = root / "killed" / "jobs"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(jobs.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name for p in jobs.glob("*.json")}
    assert 0 < len(done_before)
    assert not (root / "killed" / "results.parquet").exists()
    run = run_sweep(root, "+sweep=quantity", "merge.interval=4", "merge.quantity=1,2,4,8", name="killed",
                    cache=cache, fresh_results_cache=True)
    assert run.returncode == 0, run.stderr[-3000:]
    frame = run.results()
    assert sorted(frame[frame["kind"] == "wsm"]["quantity"].unique()) == [1, 2, 4, 8]
    assert frame.groupby(["variant", "task", "metric"]).size().max() == 1
    runs = wandb_runs(root / "killed")
    assert set(frame["variant"]) <= set(runs)
    assert all(r["state"] == "finished" for r in runs.values())
    leftovers = [p for p in (root / "killed-merges").iterdir() if p.name.startswith(".")]
    assert not leftovers
