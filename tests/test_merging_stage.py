"""The sweep's merge stage: every merge a sweep needs in one pass, then reused by the jobs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from helpers.merging import updates_series
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from safetensors import safe_open

import wsm_exp.__main__  # noqa: F401  (registers the schemas and the ${cwd:} resolver, as the entry point does)
from wsm_exp.merging.cache import merge_or_reuse
from wsm_exp.merging.merger import merge_plan
from wsm_exp.merging.series import load_series
from wsm_exp.sweep.planning.job_plan import plan_job
from wsm_exp.sweep.planning.sources import make_source
from wsm_exp.sweep.planning.variant_merge import variant_plan
from wsm_exp.sweep.stage.merge_stage import run_merge_stage

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def stage(cfg):
    """The stage as the callbacks run it: inside Hydra, which composes each job of the sweep."""
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return run_merge_stage(cfg)


def sweep_config(tmp: Path, series: Path | None, sweep: list[str]):
    """The config Hydra hands the callbacks of ``python -m wsm_exp <sweep>`` (over a user series when given)."""
    base = [f"paths.sweeps={tmp}/sweeps", "logger=none", "eval=benchmarks"]
    if series is not None:
        base += [f"series.path={series}", "series.tokens_per_step=1000", "baselines.wsd_shapes=[]"]
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose("config", overrides=base, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = [*base, *sweep]
    return cfg


def tensors(folder: Path) -> dict[str, bytes]:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}


def test_stage_merges_every_variant_in_one_read_and_jobs_reuse_them(tmp_path, monkeypatch):
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids"))
    steps = [10, 20, 30, 40, 50]
    updates_series(tmp_path / "run", steps)
    for file in (tmp_path / "run").rglob("*"):  # settled checkpoints (the identity cache skips racy files)
        os.utime(file, (time.time() - 60, time.time() - 60))
    cfg = sweep_config(tmp_path, tmp_path / "run", ["merge.quantity=2,3,4", "merge.curve=mean,1-sqrt"])
    summary = stage(cfg)
    assert (summary.merged, summary.cached, summary.deferred) == (6, 0, 0)
    unique = sum(len(b) for s in steps[1:] for b in tensors(tmp_path / "run" / f"step_{s}").values())
    assert summary.bytes_read == unique  # steps 20..50, each tensor once (separately: 9 checkpoint reads)
    merges = Path(cfg.paths.merges)
    series = load_series(tmp_path / "run", tokens_per_step=1000)
    by_step = {c.step: c for c in series.checkpoints}
    for quantity in (2, 3, 4):
        for curve in ("mean", "1-sqrt"):
            job = cfg.copy()
            with open_dict(job):
                job.merge.quantity, job.merge.curve = quantity, curve
            variant = plan_job(job, make_source(job)).variant
            plan = variant_plan(variant, [by_step[s] for s in variant.steps], 1000)
            reused = merge_or_reuse(plan, merges)  # what the job does
            assert reused.reused and reused.out_dir == merges / plan.key
            alone = merge_plan(plan, tmp_path / "alone" / plan.key, progress=False)  # bit-identical to one merge
            assert tensors(alone.out_dir) == tensors(reused.out_dir)
            assert alone.identity == reused.identity
    assert stage(cfg) == type(summary)(0, 6, 0)  # a rerun finds them all cached
    assert not [p for p in merges.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_stage_leaves_series_that_are_not_on_disk_to_the_jobs(tmp_path):
    cfg = sweep_config(tmp_path, None, ["merge.quantity=2,3", "baselines.wsd_shapes=[]"])
    summary = stage(cfg)  # the embedded study, not trained under this cache
    assert (summary.merged, summary.cached, summary.deferred) == (0, 0, 2)
    assert not (tmp_path / "sweeps").exists()  # nothing trained, nothing merged
