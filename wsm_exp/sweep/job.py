"""One Hydra job = one merge variant (plus its baselines), walked through the whole flow once.

    plan (no work) -> ensure series -> select window -> merge (or reuse) -> evaluate (or reuse)
    -> result rows (atomic, per variant) -> W&B run

Every evaluated model is keyed by content and every variant's rows by its name and config
fingerprint, so a rerun, a resumed sweep or a second sweep sharing variants recomputes nothing.
A failure inside one variant becomes a ``failed`` row; the sweep goes on.

Example (what ``python -m wsm_exp`` runs for each job):
    >>> from wsm_exp.sweep.job import run_job   # run_job(cfg) -> list of failed variant names
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsm_exp.merging.weights import explicit_weights, merge_weights
from wsm_exp.sweep import folder, results, tracking
from wsm_exp.sweep.config import BaselinesConfig, ConfigError, LoggerConfig, MergeConfig, from_node
from wsm_exp.sweep.sources import EmbeddedSource, UserSource, make_source
from wsm_exp.sweep.variants import (Variant, fidelity_branch, merge_then_decay_variant, merge_variant, raw_variant,
                                    wsd_variant)

log = logging.getLogger(__name__)


@dataclass
class JobPlan:
    """Everything a job will evaluate, decided from config alone."""

    variant: Variant
    baselines: list[Variant]
    branches: list[str]  # series the job needs (trained on demand for the embedded study)


def sweep_paths(cfg: DictConfig) -> tuple[str, Path]:
    """(sweep name, sweep folder) from the config."""
    return str(cfg.sweep_name), Path(cfg.paths.sweep_dir)


def plan_job(cfg: DictConfig, source: EmbeddedSource | UserSource) -> JobPlan:
    """Check the variant and decide its baselines without training, merging or evaluating.

    Raises ConfigError naming the key (merge.curve, merge.duration, ...) and what would work.
    """
    from wsm_exp.evaluation import SuiteConfig
    from wsm_exp.merging.series import SeriesError, planned_series, select_window
    from wsm_exp.merging.weights import WeightsError

    if OmegaConf.select(cfg, "sft") is not None:  # the SFT sweep checks its own keys (wsm_exp/sweep/sft.py)
        from wsm_exp.sweep.sft import check_sft
        check_sft(cfg)
    merge = from_node(MergeConfig, cfg.merge, key="merge")
    base = from_node(BaselinesConfig, cfg.baselines, key="baselines")
    try:
        from_node(SuiteConfig, cfg.eval, key="eval")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    allowed = ["wsm", *(f"wsd_{s}" for s in source.wsd_shapes)]
    if merge.branch not in allowed:
        raise ConfigError(f"merge.branch={merge.branch!r} is not a series here; allowed: {allowed} "
                          "(wsm: the constant-LR run; wsd_<shape>: merge inside that decay, decay-then-merge).")
    steps = source.planned_wsm_steps()
    merge_steps = steps if merge.branch == "wsm" else source.planned_steps(merge.branch)
    end = merge.end if merge.end is None or merge.end > 0 else merge_steps[-1] + merge.end
    try:
        window = select_window(planned_series(merge_steps, source.tokens_per_step), end=end,
                               quantity=merge.quantity, interval=merge.interval, duration=merge.duration)
    except SeriesError as err:
        raise ConfigError(f"merge.quantity/interval/duration/end: {err}") from None
    try:
        if merge.weights is not None:
            weights = explicit_weights([float(w) for w in merge.weights], window.quantity)
        else:
            weights = merge_weights(merge.curve, window.quantity, min_lr=merge.min_lr, alpha=merge.alpha)
    except WeightsError as err:
        key = "merge.weights" if merge.weights is not None else "merge.curve/min_lr/alpha"
        raise ConfigError(f"{key}: {err}") from None
    seed = int(cfg.seed)
    window_steps = [c.step for c in window.checkpoints]
    variant = merge_variant(curve=merge.curve, steps=window_steps, weights=weights,
                            interval=window.interval, duration=window.duration, min_lr=merge.min_lr,
                            alpha=merge.alpha, explicit=merge.weights is not None, seed=seed, branch=merge.branch,
                            dtype=merge.dtype, accumulate=merge.accumulate)
    if "wsm_heldout_bpb" in list(cfg.eval.tasks) and isinstance(source, UserSource) and not source.heldout():
        raise ConfigError(
            "eval.tasks: the suite measures wsm_heldout_bpb, but your series has no held-out text. Give "
            "series.heldout=/path/heldout.jsonl ({\"text\": ...} per line), or use a suite without it "
            "(eval=benchmarks)."
        )
    unknown = sorted(set(base.wsd_shapes) - set(source.wsd_shapes))
    if unknown:
        raise ConfigError(
            f"baselines.wsd_shapes: {unknown} not available; allowed: {list(source.wsd_shapes)}. "
            "For your own series, give each WSD run as series.wsd.<shape>=/path."
        )
    last, end = steps[-1], variant.end_step
    baselines: list[Variant] = []
    branches = ["wsm", *(f"wsd_{s}" for s in base.wsd_shapes)]
    if merge.branch not in branches:
        branches.append(merge.branch)
    if base.raw_last:
        baselines.append(raw_variant(step=last, seed=seed))
    if base.matched_tokens and end != last:
        baselines.append(raw_variant(step=end, seed=seed))
    for shape in base.wsd_shapes:
        try:
            wsd_steps = source.planned_steps(f"wsd_{shape}")  # the run's own last step: its budget may differ
        except SeriesError as err:
            raise ConfigError(f"series.wsd.{shape}: {err}") from None
        decay = source.wsd_decay_steps(wsd_steps[-1])
        baselines.append(wsd_variant(shape=shape, step=wsd_steps[-1], decay_steps=decay, seed=seed,
                                     min_lr=source.decay_min_lr))
        if base.matched_tokens and end != wsd_steps[-1] and end in wsd_steps:
            baselines.append(wsd_variant(shape=shape, step=end, decay_steps=decay, seed=seed,
                                         min_lr=source.decay_min_lr))
    if base.fidelity:
        if isinstance(source, UserSource):
            raise ConfigError("baselines.fidelity: real-decay fidelity branches need the embedded study; "
                              "set baselines.fidelity=false for your own series.")
        branch = fidelity_branch(end, window.duration)
        branches.append(branch)
        shape = source.train_cfg.decay_shape
        baselines.append(wsd_variant(shape=shape, step=end, decay_steps=window.duration, seed=seed,
                                     branch=branch, min_lr=source.decay_min_lr))
    if base.merge_then_decay:
        decays = _merge_then_decay(merge, variant, source)
        baselines += decays
        branches += [v.branch for v in decays]
    return JobPlan(variant=variant, baselines=baselines, branches=branches)


def _merge_then_decay(merge: MergeConfig, variant: Variant, source) -> list[Variant]:
    """Figure 5c: a real decay over D steps from the merge, and the same decay from its newest checkpoint."""
    if isinstance(source, UserSource):
        raise ConfigError("baselines.merge_then_decay: decays started from a merge are trained by the embedded "
                          "study; set baselines.merge_then_decay=false for your own series.")
    if variant.kind != "wsm" or merge.weights is not None or merge.alpha is not None or merge.min_lr or merge.dtype:
        raise ConfigError("baselines.merge_then_decay: needs a WSM merge by a named curve (merge.branch=wsm, no "
                          "merge.weights, merge.alpha, merge.min_lr or merge.dtype); the decay's parent is named "
                          "by its curve and merged in the checkpoints' dtype.")
    decay, end = variant.duration, variant.end_step
    branch_end = source.branch_start + source.branch_steps
    if end + decay > branch_end:
        raise ConfigError(
            f"merge.end: merge-then-decay decays for D={decay} steps after the window's newest step {end}, past "
            f"the branch end {branch_end}; pick merge.end ≤ {branch_end - decay} (relative: ≤ {-decay})."
        )
    shape, min_lr = source.train_cfg.decay_shape, source.decay_min_lr
    after_merge = merge_then_decay_variant(merge=variant, shape=shape, decay_steps=decay, min_lr=min_lr)
    return [after_merge, wsd_variant(shape=shape, step=end + decay, decay_steps=decay, seed=variant.seed,
                                     branch=fidelity_branch(end + decay, decay), min_lr=min_lr)]


def run_job(cfg: DictConfig) -> list[str]:
    """Run one variant and its baselines; return the names of variants that failed."""
    if OmegaConf.select(cfg, "sft") is not None:  # the SFT sweep (paper Table 2): its own job path
        from wsm_exp.sweep.sft import run_sft_job
        return run_sft_job(cfg)
    sweep, sweep_dir = sweep_paths(cfg)
    logger_cfg = from_node(LoggerConfig, cfg.logger, key="logger")
    train_log = tracking.LazyRun(logger_cfg, sweep_dir, sweep, name=f"train-s{cfg.seed}", job_type="train")
    source = make_source(cfg, logger=train_log.log)
    plan = plan_job(cfg, source)
    merge = from_node(MergeConfig, cfg.merge, key="merge")
    context = _Context(cfg, sweep, sweep_dir, source, logger_cfg, merge)
    failed: list[str] = []
    try:
        # a swept config group (eval=a,b) escapes the pre-flight check: refuse the job, not the sweep
        key, payload = folder.identity(context.source_identity, context.eval_identity)
        folder.check(sweep_dir, key)
        folder.claim(sweep_dir, key, payload)
        branch_paths = source.ensure(plan.branches)
    except Exception as err:  # noqa: BLE001 — the failure is recorded as a row, the sweep goes on
        context.record_failure(plan.variant, err)
        return [plan.variant.name]
    finally:
        train_log.finish()
    for variant in [plan.variant, *plan.baselines]:
        try:
            ok = context.evaluate(variant, branch_paths)
        except Exception as err:  # noqa: BLE001 — even an error outside the variant's own work is a row
            context.record_failure(variant, err)
            ok = False
        if not ok:
            failed.append(variant.name)
    return failed


class _Context:
    """What the variants of one job share: paths, the series, the eval suite, the logger."""

    def __init__(self, cfg, sweep, sweep_dir, source, logger_cfg, merge: MergeConfig):
        from wsm_exp.evaluation import SuiteConfig

        self.sweep, self.sweep_dir, self.source = sweep, sweep_dir, source
        self.merges, self.scores = Path(cfg.paths.merges), Path(cfg.paths.scores)
        self.logger_cfg, self.merge = logger_cfg, merge
        self.suite = from_node(SuiteConfig, cfg.eval, key="eval")
        self.eval_identity = OmegaConf.to_container(cfg.eval, resolve=True)
        self.source_identity = source.identity()
        self._series: dict[str, Any] = {}

    def fingerprint(self, variant: Variant) -> str:
        payload = {"source": self.source_identity, "eval": self.eval_identity, "variant": asdict(variant),
                   "merge_dtype": self.merge.dtype, "accumulate": self.merge.accumulate}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def evaluate(self, variant: Variant, branch_paths: dict[str, Path]) -> bool:
        """Evaluate one variant unless finished; write its rows; True when ok."""
        fingerprint = self.fingerprint(variant)
        with _variant_lock(self.sweep_dir, variant.name):
            if results.finished_job(self.sweep_dir, variant.name, fingerprint):
                log.info("skip %s: finished earlier with the same config", variant.name)
                return True
            try:
                rows = self._rows(variant, branch_paths)
                # W&B first: a kill between the two redoes the variant, whose run (same id) is replaced
                tracking.log_variant(self.logger_cfg, self.sweep_dir, self.sweep, variant, rows)
            except Exception as err:  # noqa: BLE001 — recorded as a failed row; a rerun retries it
                self.record_failure(variant, err, fingerprint)
                return False
            results.write_job(self.sweep_dir, variant.name, fingerprint, rows)
            return True

    def record_failure(self, variant: Variant, err: BaseException, fingerprint: str = "") -> None:
        message = f"{type(err).__name__}: {err}"
        log.error("variant %s failed: %s\n%s", variant.name, message, traceback.format_exc())
        row = results.make_row(sweep=self.sweep, sweep_dir=str(self.sweep_dir), **self._fields(variant),
                               status="failed", error=message)
        results.write_job(self.sweep_dir, variant.name, fingerprint or "failed", [row])

    def _fields(self, variant: Variant) -> dict[str, Any]:
        return variant.row_fields(tokens_per_step=self.source.tokens_per_step,
                                  branch_start=self.source.branch_start, branch_steps=self.source.branch_steps)

    def _series_of(self, branch: str, path: Path):
        from wsm_exp.merging.series import load_series

        if branch not in self._series:
            self._series[branch] = load_series(path, tokens_per_step=self.source.tokens_per_step)
        return self._series[branch]

    def _checkpoints(self, variant: Variant, branch_paths: dict[str, Path]):
        series = self._series_of(variant.branch, branch_paths[variant.branch])
        by_step = {c.step: c for c in series.checkpoints}
        missing = [s for s in variant.steps if s not in by_step]
        if missing:
            raise FileNotFoundError(
                f"Series {series.root} has no checkpoint at step(s) {missing} needed by {variant.name}; "
                f"available: {sorted(by_step)}. Retrain the branch or pick a window inside it."
            )
        return [by_step[s] for s in variant.steps]

    def _rows(self, variant: Variant, branch_paths: dict[str, Path]) -> list[dict[str, Any]]:
        from wsm_exp.evaluation import evaluate_model
        from wsm_exp.merging.merger import merge_key, merge_checkpoints
        from wsm_exp.merging.series import checkpoint_identity, validate_checkpoints
        from wsm_exp.merging.weights import CONVENTION

        checkpoints = self._checkpoints(variant, branch_paths)
        merge_seconds = 0.0
        if variant.kind in ("wsm", "decay_merge") and variant.quantity > 1:
            validate_checkpoints(checkpoints)
            key = merge_key(checkpoints, list(variant.weights), self.merge.dtype, self.merge.accumulate)
            model_dir = self.merges / key
            if not (model_dir / "merge.json").is_file():
                started = time.perf_counter()
                merge_checkpoints(checkpoints, list(variant.weights), model_dir, dtype=self.merge.dtype,
                                  accumulate=self.merge.accumulate,
                                  provenance={"curve": variant.curve, "min_lr": variant.min_lr,
                                              "convention": CONVENTION, "variant": variant.name})
                merge_seconds = time.perf_counter() - started
            model_hash = key
        else:
            model_dir, model_hash = checkpoints[0].path, checkpoint_identity(checkpoints[0])
        heldout = self.source.heldout()
        scores = evaluate_model(Path(model_dir), self.suite, cache_dir=self.scores,
                                extra_data={"heldout": heldout} if heldout else None, model_hash=model_hash)
        fields = self._fields(variant)
        return [
            results.make_row(
                sweep=self.sweep, sweep_dir=str(self.sweep_dir), **fields, model_hash=model_hash,
                task=s.task, category=s.category, metric=s.metric, value=float(s.value),
                stderr=float(s.stderr), higher_is_better=bool(s.higher_is_better),
                merge_seconds=merge_seconds, eval_seconds=0.0 if getattr(s, "from_cache", False) else s.seconds,
                harness_version=s.harness_version, task_version=s.task_version, task_hash=s.task_hash,
            )
            for s in scores
        ]


@contextlib.contextmanager
def _variant_lock(sweep_dir: Path, name: str):
    """Exclusive per-variant lock, so parallel jobs sharing a baseline evaluate it once."""
    lock_path = Path(sweep_dir) / "jobs" / f".{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
