"""The SFT kind of job (paper Table 2): the same fine-tuning on both bases of the comparison, each epoch evaluated.

    bases (WSD decay end, best WSM merge) -> SFT (same items, order, steps, LR schedule, seed)
    -> epoch_<k>/ per base -> every epoch evaluated (lm-eval, cached) -> rows (kind "sft") -> W&B

The bases (``planning.sft_plan``): given runs, given folders, or the series' WSD end and its best WSM merge.
Fine-tuned epochs are cached by content (base weights, recipe, items) under ``<paths.cache>/sft/``.

Example:
    >>> from wsm_exp.sweep.run.sft_job import run_sft_job   # run_sft_job(cfg) -> list of failed variant names
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsm_exp.keys import content_key
from wsm_exp.sweep.planning.sft_plan import (ROLES, Base, best_merge, check_sft, fallback_merge, given_epochs,
                                             user_variant)
from wsm_exp.sweep.record import folder, results, tracking
from wsm_exp.sweep.run.workspace import sweep_paths, variant_lock
from wsm_exp.sweep.spec.schemas import ConfigError, LoggerConfig, SFTJobConfig, from_node
from wsm_exp.sweep.spec.variants import Variant, sft_variant, wsd_variant

log = logging.getLogger(__name__)


def resolve_bases(cfg: DictConfig, job: SFTJobConfig, source, seed: int) -> list[Base]:
    """The two bases (training the series and merging on demand for the default)."""
    if job.runs:
        return [Base(role, user_variant(role, seed),
                     Path(job.bases[role]) if job.bases else None, given_epochs(Path(job.runs[role])))
                for role in ROLES]
    if job.bases:
        return [Base(role, user_variant(role, seed), Path(job.bases[role])) for role in ROLES]
    from wsm_exp.merging.series import load_series

    branch = f"wsd_{job.wsd_shape}"
    if job.wsd_shape not in source.wsd_shapes:
        raise ConfigError(f"sft.wsd_shape={job.wsd_shape!r}: no such WSD branch; allowed: {list(source.wsd_shapes)}.")
    paths = source.ensure(["wsm", branch])
    wsd_end = load_series(paths[branch]).checkpoints[-1]
    wsd = Base("wsd", wsd_variant(shape=job.wsd_shape, step=wsd_end.step, seed=seed,
                                  decay_steps=source.wsd_decay_steps(wsd_end.step), min_lr=source.decay_min_lr),
               wsd_end.path)
    wsm_series = load_series(paths["wsm"])
    variant = best_merge(job, source, seed) or fallback_merge(job, wsm_series, seed)
    return [wsd, Base("wsm", variant, _merged(cfg, wsm_series, variant))]










def _merged(cfg: DictConfig, series, variant: Variant) -> Path:
    """The merge's folder in the shared merge cache (the main job's, when it made it already)."""
    from wsm_exp.merging.cache import merge_or_reuse
    from wsm_exp.merging.plan import build_plan

    by_step = {c.step: c for c in series.checkpoints}
    plan = build_plan([by_step[s] for s in variant.steps], curve=variant.curve)
    return merge_or_reuse(plan, Path(cfg.paths.merges)).out_dir


def finetuned(base: Base, items, recipe, *, seed: int, cache: Path, logger=None) -> dict[int, Path]:
    """{epoch: folder} of the SFT of ``base`` (trained once per base × recipe × items, under a lock)."""
    from wsm_exp.evaluation import model_identity
    from wsm_exp.study.sft_train import finetune

    if base.epochs:
        return base.epochs
    items_hash = hashlib.sha256(json.dumps([[i.prompt, i.answer] for i in items]).encode()).hexdigest()
    key = hashlib.sha256(json.dumps({"base": model_identity(base.path), "recipe": asdict(recipe),
                                     "items": items_hash, "seed": seed, "version": 1}, sort_keys=True)
                         .encode()).hexdigest()[:16]
    out = cache / key
    out.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return finetune(base.path, out, items, recipe, seed=seed, desc=f"sft-{base.role}", logger=logger)


def run_sft_job(cfg: DictConfig) -> list[str]:
    """Fine-tune both bases (or take their given epochs), evaluate every epoch; return failed variants."""
    from wsm_exp.evaluation import SuiteConfig
    from wsm_exp.study.sft_data import training_items
    from wsm_exp.sweep.planning.sources import make_source

    job, recipe = check_sft(cfg)
    sweep, sweep_dir = sweep_paths(cfg)
    seed = int(cfg.seed)
    data_seed = seed if job.data_seed is None else job.data_seed
    logger_cfg = from_node(LoggerConfig, cfg.logger, key="logger")
    train_log = tracking.LazyRun(logger_cfg, sweep_dir, sweep, name=f"train-s{seed}", job_type="train")
    source = make_source(cfg, logger=train_log.log)
    suite = from_node(SuiteConfig, cfg.eval, key="eval")
    evaluator = _Evaluator(sweep, sweep_dir, logger_cfg, suite, OmegaConf.to_container(cfg.eval, resolve=True),
                           Path(cfg.paths.scores), source)
    setup = Variant(name=f"sft-bases-s{seed}", kind="sft", branch="sft", curve="none", steps=(0,),
                    weights=(1.0,), seed=seed)
    try:
        key, payload = folder.identity(source.identity(), evaluator.eval_identity)
        folder.check(sweep_dir, key)
        folder.claim(sweep_dir, key, payload)
        bases = resolve_bases(cfg, job, source, seed)
        items = [] if job.runs else training_items(recipe.items_per_skill, data_seed)
    except Exception as err:  # noqa: BLE001 — recorded as a failed row; the other seeds go on
        evaluator.record_failure(setup, 0, err)
        return [setup.name]
    finally:
        train_log.finish()
    results.job_file(sweep_dir, setup.name).unlink(missing_ok=True)  # a failure of an earlier try is gone
    failed = []
    for base in bases:
        sft_log = tracking.LazyRun(logger_cfg, sweep_dir, sweep, name=f"sft-train-{base.role}-s{seed}",
                                   job_type="train")  # one run per base: each logs steps from 1
        try:
            epochs = finetuned(base, items, recipe, seed=data_seed, cache=Path(cfg.paths.cache) / "sft",
                               logger=sft_log.log)
        except Exception as err:  # noqa: BLE001 — the base's first epoch carries the failure
            first = sft_variant(base=base.variant, role=base.role, epoch=1)
            evaluator.record_failure(first, 1, err)
            failed.append(first.name)
            continue
        finally:
            sft_log.finish()
        models = ({0: base.path} if job.eval_bases and base.path else {}) | epochs
        for epoch, path in models.items():
            variant = sft_variant(base=base.variant, role=base.role, epoch=epoch)
            if not evaluator.evaluate(variant, epoch, path):
                failed.append(variant.name)
    return failed


class _Evaluator:
    """Evaluates one SFT model per call and records its rows (skipped when finished with the same model)."""

    def __init__(self, sweep, sweep_dir, logger_cfg, suite, eval_identity, scores: Path, source):
        self.sweep, self.sweep_dir, self.logger_cfg = sweep, Path(sweep_dir), logger_cfg
        self.suite, self.eval_identity, self.scores, self.source = suite, eval_identity, scores, source

    def _fields(self, variant: Variant, epoch: int) -> dict[str, Any]:
        fields = variant.row_fields(tokens_per_step=self.source.tokens_per_step,
                                    branch_start=self.source.branch_start, branch_steps=self.source.branch_steps)
        return {**fields, "epoch": epoch, "sweep": self.sweep, "sweep_dir": str(self.sweep_dir)}

    def evaluate(self, variant: Variant, epoch: int, path: Path) -> bool:
        from wsm_exp.evaluation import evaluate, model_identity
        from wsm_exp.evaluation.samples import write_samples

        with variant_lock(self.sweep_dir, variant.name):
            try:
                model_hash = model_identity(path)
                fingerprint = content_key({"eval": self.eval_identity, "variant": asdict(variant),
                                           "model": model_hash}, length=20)
                if results.finished_job(self.sweep_dir, variant.name, fingerprint):
                    return True
                heldout = self.source.heldout() if "wsm_heldout_bpb" in self.suite.tasks else None
                evaluation = evaluate(path, self.suite, cache_dir=self.scores, model_hash=model_hash,
                                      extra_data={"heldout": heldout} if heldout else None)
                write_samples(self.sweep_dir, model_hash, evaluation.samples)  # per-document values: intervals
                rows = results.score_rows(evaluation.scores, **self._fields(variant, epoch), model_hash=model_hash)
                tracking.log_variant(self.logger_cfg, self.sweep_dir, self.sweep, variant, rows)
            except Exception as err:  # noqa: BLE001 — a failed row; a rerun retries it
                self.record_failure(variant, epoch, err)
                return False
            results.write_job(self.sweep_dir, variant.name, fingerprint, rows)
            return True

    def record_failure(self, variant: Variant, epoch: int, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}"
        log.error("variant %s failed: %s\n%s", variant.name, message, traceback.format_exc())
        row = results.make_row(**self._fields(variant, epoch), status="failed", error=message)
        results.write_job(self.sweep_dir, variant.name, "failed", [row])
