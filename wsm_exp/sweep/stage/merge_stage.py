"""The sweep's merge stage: every merge its jobs need, in one streaming pass, before they start.

Each job merges its own variant (``wsm_exp.sweep.run.job``), so a sweep of K variants over the same
checkpoints would read each checkpoint up to K times. The stage plans every job (config only),
builds each merge's ``MergePlan`` exactly as the job will (``planning.variant_merge``), drops those already
in the merge cache, and computes the rest with ``merge_plans``: each input tensor is read once and
accumulated into every output that uses it (memory: a few pieces of one tensor per merge).
The jobs then find their merges cached (``merge_or_reuse`` reuses them).

Series that are not on disk yet are left to the jobs: the stage trains nothing. The embedded
study is trained by the first job that needs it (its training curves go to that job's W&B run),
so on a fresh study the jobs merge as before; a rerun, a second sweep over the same study, or a
sweep over your own checkpoints (``series.path``) gets the one-pass stage. A failure in the stage
is logged and the jobs merge on their own (each records its own error). ``merge_stage: false``
turns the stage off. ``merge_stage_tasks=P`` splits the pass by output shard over P local processes,
or under the Slurm launcher over the P tasks of one Slurm array (``wsm_exp.sweep.stage.merge_array``);
``merge_shard_mib`` sets the shard size. Fitted merges (``merge.curve=fitted``) are left to their jobs:
their weights exist only after the job's fit; jobs with ``merge.keep=false`` are skipped: they merge into
memory. Merges of a DCP series paired with ``series.hf_config`` are
written as Hugging Face folders in their own cache folder (``wsm_exp.sweep.planning.hf_pairing``).

Example:
    >>> from wsm_exp.sweep.stage.merge_stage import run_merge_stage   # run_merge_stage(cfg) -> StageSummary
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wsm_exp.atomic import temp_path
from wsm_exp.merging.plan import MergePlan
from wsm_exp.merging.series import Checkpoint
from wsm_exp.sweep.planning.variant_merge import is_fitted, needs_merge, variant_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSummary:
    """What the stage did: merges computed in the pass, found cached, and left to the jobs."""

    merged: int
    cached: int
    deferred: int  # series not on disk yet, or checkpoints missing: the jobs handle them
    bytes_read: int = 0
    seconds: float = 0.0


def run_merge_stage(config: DictConfig, config_name: str | None = None) -> StageSummary:
    """Plan every job of the sweep and compute the merges they need in one pass (see module doc)."""
    from wsm_exp.merging.series import SeriesError, load_series
    from wsm_exp.sweep.planning import hf_pairing
    from wsm_exp.sweep.planning.compose import launched_jobs
    from wsm_exp.sweep.planning.job_plan import plan_job
    from wsm_exp.sweep.planning.sources import make_source
    from wsm_exp.sweep.spec.schemas import ConfigError, shard_size_bytes
    from wsm_exp.sweep.stage.merge_array import stage_executor

    pending: dict[tuple[Path, MergePlan], dict] = {}  # (merges folder, plan) -> its note, in first-seen order
    paired: dict[Path, Path | None] = {}  # merges folder -> the HF config its models are written with
    series: dict[Path, tuple[Checkpoint, ...]] = {}
    cached = deferred = 0
    for cfg in launched_jobs(config, config_name, multirun=True):
        if OmegaConf.select(cfg, "sft") is not None:
            continue  # the SFT sweep merges its one base itself
        try:
            source = make_source(cfg)
            job = plan_job(cfg, source)
        except ConfigError:
            continue  # the pre-flight reported it
        if not OmegaConf.select(cfg, "merge.keep", default=True):
            continue  # merge.keep=false: the job merges into memory and writes nothing
        for variant in [job.variant, *job.baselines]:
            if not needs_merge(variant):
                continue
            if is_fitted(variant):  # its weights exist only after the job's fit: the job merges it
                deferred += 1
                continue
            root = series_on_disk(source, variant.branch)
            if root is None:
                deferred += 1
                continue
            if root not in series:
                try:
                    series[root] = load_series(root, tokens_per_step=source.tokens_per_step).checkpoints
                except SeriesError:
                    series[root] = ()  # the job reports it with its own message
            by_step = {c.step: c for c in series[root]}
            if any(s not in by_step for s in variant.steps):
                deferred += 1  # the job reports the missing step
                continue
            plan = variant_plan(variant, [by_step[s] for s in variant.steps], source.tokens_per_step,
                                identify=False)
            hf_config = hf_pairing.paired_config(source.hf_config, plan.checkpoints)  # a DCP series: HF folders
            merges = hf_pairing.merges_dir(Path(cfg.paths.merges), hf_config)
            paired[merges] = hf_config
            if plan.key is not None and (merges / plan.key / "merge.json").is_file():
                cached += 1
            else:
                pending.setdefault((merges, plan), variant.merge_provenance)
    if not pending:
        return StageSummary(0, cached, deferred)
    tasks = int(config.get("merge_stage_tasks", 0))
    options = {"shard_size_bytes": shard_size_bytes(config), "workers": max(1, tasks),
               "executor": stage_executor(config)}
    merged = bytes_read = 0
    seconds = 0.0
    for hf_config in dict.fromkeys(paired[merges] for merges, _ in pending):  # a pass per HF config (usually 1)
        requests = [(merges, plan) for merges, plan in pending if paired[merges] == hf_config]
        summary = merge_into_cache(requests, provenance=[pending[r] for r in requests], hf_config=hf_config,
                                   **options)
        merged, cached = merged + summary.merged, cached + summary.cached
        bytes_read, seconds = bytes_read + summary.bytes_read, seconds + summary.seconds
    return StageSummary(merged, cached, deferred, bytes_read, seconds)


def merge_into_cache(requests: Sequence[tuple[Path, MergePlan]], **options) -> StageSummary:
    """Merge every (merges folder, plan) in one pass and publish each at ``<merges>/<key>``.

    Inputs whose identity is not cached are hashed while they stream, so each is read once: the
    outputs go to hidden folders first and are renamed to their key afterwards (under the key's lock;
    a merge another process published meanwhile is kept and ours dropped).
    """
    from wsm_exp.merging.cache import exclusive, remove_stale
    from wsm_exp.merging.merger import merge_plans
    from wsm_exp.merging.output import fsync_folder

    for merges in dict.fromkeys(merges for merges, _ in requests):
        remove_stale(merges)  # what killed stages and jobs left
    tmp = [temp_path(merges / "stage") for merges, _ in requests]
    try:
        results = merge_plans([plan for _, plan in requests], tmp, progress=False, **options)
        merged = cached = 0
        for (merges, _), out, result in zip(requests, tmp, results):
            target = merges / result.key
            with exclusive(merges / f".{result.key}.lock"):
                if (target / "merge.json").is_file():
                    cached += 1
                    continue
                if target.exists():
                    shutil.rmtree(target)  # a folder without merge.json is debris of a killed merge
                out.rename(target)
                fsync_folder(merges)  # the rename is durable before the jobs rely on it
                merged += 1
    finally:
        for out in tmp:
            shutil.rmtree(out, ignore_errors=True)
    seconds = results[0].seconds if results else 0.0
    return StageSummary(merged, cached, 0, results[0].bytes_read if results else 0, seconds)


def series_on_disk(source, branch: str) -> Path | None:
    """The folder of a merge branch's series when it exists already (nothing is trained)."""
    if not source.trains_branches:
        try:
            return source.ensure([branch])[branch]
        except Exception:  # noqa: BLE001 — a branch the job will refuse with its own message
            return None
    from wsm_exp.study.branches import study_root

    root = study_root(source.model_cfg, source.data_cfg, source.train_cfg, seed=source.seed,
                      cache_root=source.cache_root) / branch
    return root if (root / "series.json").is_file() else None


def log_stage(config: DictConfig, config_name: str | None = None) -> None:
    """Run the stage unless ``merge_stage`` is false; a failure is logged, never fatal (jobs merge alone)."""
    if not config.get("merge_stage", True):
        return
    try:
        summary = run_merge_stage(config, config_name)
    except Exception as err:  # noqa: BLE001 — the jobs merge on their own and record their own errors
        log.warning("merge stage skipped (%s: %s); each job merges its own variant", type(err).__name__, err)
        return
    if summary.merged or summary.cached or summary.deferred:
        log.info("merge stage: %d merged in one pass (%.1f s, %.2f GB read), %d cached, %d left to the jobs",
                 summary.merged, summary.seconds, summary.bytes_read / 1e9, summary.cached, summary.deferred)


__all__ = ["StageSummary", "log_stage", "merge_into_cache", "run_merge_stage", "series_on_disk"]
