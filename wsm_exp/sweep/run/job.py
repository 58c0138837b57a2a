"""One Hydra job = one merge variant (plus its baselines), walked through the whole flow once.

    plan (no work, wsm_exp.sweep.planning.job_plan) -> ensure series -> fingerprint the inputs -> reuse, or
    merge + evaluate -> result rows (atomic, per variant) -> W&B run

Every evaluated model is keyed by content, and every variant's rows by a fingerprint of every input
that made them (wsm_exp.sweep.record.freshness): a rerun reuses a variant only when nothing changed, and
otherwise says why it recomputes. A failure inside one variant becomes a ``failed`` row; the sweep
goes on. A refused job (config error) raises ConfigError and writes nothing.

Example (what ``python -m wsm_exp`` runs for each job):
    >>> from wsm_exp.sweep.run.job import run_job   # run_job(cfg) -> list of failed variant names
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsm_exp.sweep.planning import screen_record
from wsm_exp.sweep.planning.job_plan import plan_job
from wsm_exp.sweep.planning.sources import SeriesSource, make_source
from wsm_exp.sweep.planning.variant_merge import fit_config, is_fitted, needs_merge
from wsm_exp.sweep.planning.variant_model import variant_model
from wsm_exp.sweep.record import folder, freshness, results, tracking
from wsm_exp.sweep.record.console import FILE_ONLY, library_output_to_log, quiet_terminal
from wsm_exp.sweep.run.sft_job import run_sft_job
from wsm_exp.sweep.run.workspace import sweep_paths, variant_lock
from wsm_exp.sweep.spec.schemas import LoggerConfig, MergeConfig, from_node, shard_size_bytes
from wsm_exp.sweep.spec.variants import Variant

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig) -> list[str]:
    """Run one variant and its baselines; return the names of variants that failed."""
    quiet_terminal()
    _exit_cleanly_on_sigterm()
    if OmegaConf.select(cfg, "sft") is not None:  # the SFT sweep (paper Table 2): the other kind of job
        return run_sft_job(cfg)
    sweep, sweep_dir = sweep_paths(cfg)
    logger_cfg = from_node(LoggerConfig, cfg.logger, key="logger")
    train_log = tracking.LazyRun(logger_cfg, sweep_dir, sweep, name=f"train-s{cfg.seed}", job_type="train")
    source = make_source(cfg, logger=train_log.log)
    plan = plan_job(cfg, source)  # ConfigError: refused, nothing written
    context = _Context(cfg, sweep, sweep_dir, source, logger_cfg)
    context.baselines = {b.name for b in plan.baselines}
    folder.check(sweep_dir, context.keys.folder, context.keys.payload)  # another study or suite: refused, nothing written
    folder.claim(sweep_dir, context.keys.folder, context.keys.payload)
    failed: list[str] = []
    try:
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

    def __init__(self, cfg, sweep, sweep_dir, source: SeriesSource, logger_cfg):
        from wsm_exp.evaluation import SuiteConfig

        self.sweep, self.sweep_dir, self.source = sweep, sweep_dir, source
        self.merges, self.scores, self.fits = Path(cfg.paths.merges), Path(cfg.paths.scores), Path(cfg.paths.fits)
        self.fit_settings = from_node(MergeConfig, cfg.merge, key="merge").fit
        self.shard_size_bytes = shard_size_bytes(cfg)
        self.keep = from_node(MergeConfig, cfg.merge, key="merge").keep  # false: merges evaluated from memory
        self.logger_cfg = logger_cfg
        self.suite = from_node(SuiteConfig, cfg.eval, key="eval")
        self.eval_identity = folder.eval_identity(cfg)  # with the held-out split when scored on its test half
        self.keys = folder.Keys.of(source.identity(), self.eval_identity)
        self._series: dict[str, Any] = {}
        self._identities: dict[Path, str] = {}
        self._scored: Path | None = None
        self._heldout_hash: str | None = None
        self.baselines: set[str] = set()  # this job's baselines: always the full suite under eval.staged

    def stage_of(self, variant: Variant):
        """(suite, eval stage, reason) of a variant: the full suite unless eval.staged screened it out."""
        if not self.suite.staged:
            return self.suite, "full", ""
        picked = None if variant.name in self.baselines else screen_record.decision(self.sweep_dir, variant.name)
        stage, reason = picked or ("full", screen_record.BASELINE if variant.name in self.baselines else screen_record.UNSCREENED)
        return (self.suite.screen(self.source.heldout() is not None) if stage == "screen" else self.suite,
                stage, reason)

    def inputs(self, variant: Variant, branch_paths: dict[str, Path]) -> dict[str, Any]:
        """Every input that determines the variant's rows, by name (see wsm_exp.sweep.record.freshness)."""
        from wsm_exp.evaluation.harness import tasks_fingerprint
        from wsm_exp.merging.plan import MERGER_VERSION
        from wsm_exp.sweep.planning.hf_pairing import config_digest, paired_config

        inputs: dict[str, Any] = {
            "variant": freshness.digest(asdict(variant)),
            "eval settings": {k: v for k, v in self.eval_identity.items() if k not in ("staged", "screen_limit")},
            "task configs": tasks_fingerprint(), "packages": freshness.package_versions(),
        }
        for checkpoint in self._checkpoints(variant, branch_paths):
            inputs[f"checkpoint {variant.branch}/{checkpoint.path.name}"] = self._identity(checkpoint)
        if needs_merge(variant):
            inputs["merger"] = MERGER_VERSION
        suite, stage, _ = self.stage_of(variant)
        if stage != "full":  # a screened-out variant's rows are redone when it later gets the full suite
            inputs["eval stage"] = {"stage": stage, "limit": suite.limit, "tasks": suite.tasks}
        hf_config = paired_config(self.source.hf_config, self._checkpoints(variant, branch_paths))
        if hf_config is not None:
            inputs["hf config"] = config_digest(hf_config)
        heldout = self.source.heldout()
        if heldout and "wsm_heldout_bpb" in self.suite.tasks:
            inputs["held-out file"] = self._heldout_digest(heldout)
            if self.fit_settings.score_on == "test":
                inputs["held-out test split"] = self._heldout_digest(self._scored_heldout())
        return inputs

    def evaluate(self, variant: Variant, branch_paths: dict[str, Path]) -> bool:
        """Evaluate one variant unless its stored rows are fresh; write its rows; True when ok."""
        inputs = self.inputs(variant, branch_paths)
        fingerprint = freshness.fingerprint(inputs)
        with variant_lock(self.sweep_dir, variant.name):
            stored = results.read_job(self.sweep_dir, variant.name, self.keys.suite)
            if results.all_ok(stored) and stored.get("fingerprint") == fingerprint:
                log.info("reused %s: %s", variant.name, _headline(stored["rows"]))
                return True
            if results.all_ok(stored):
                log.info("recomputed %s: %s", variant.name, freshness.what_changed(stored.get("inputs"), inputs))
            started = time.perf_counter()
            try:
                rows, variant, fit, from_cache = self._rows(variant, branch_paths)
                # W&B first: a kill between the two redoes the variant, whose run (same id) is replaced
                tracking.log_variant(self.logger_cfg, self.sweep_dir, self.sweep, variant, rows, fit=fit)
            except Exception as err:  # noqa: BLE001 — recorded as a failed row; a rerun retries it
                self.record_failure(variant, err, fingerprint, inputs)
                return False
            results.write_job(self.sweep_dir, variant.name, fingerprint, rows, suite=self.keys.suite, inputs=inputs,
                              from_cache=from_cache)
            if from_cache:  # every score was in the score cache: nothing was evaluated
                log.info("reused %s from the score cache: %s", variant.name, _headline(rows))
            else:
                log.info("computed %s: %s (%.1f s; tokens/s %s)", variant.name, _headline(rows),
                         time.perf_counter() - started, _throughput(rows))
            return True

    def record_failure(self, variant: Variant, err: BaseException, fingerprint: str = "failed",
                       inputs: dict[str, Any] | None = None) -> None:
        message = f"{type(err).__name__}: {err}"
        log.error("FAILED %s: %s", variant.name, message)
        log.info("traceback of %s:\n%s", variant.name, traceback.format_exc(), extra=FILE_ONLY)
        row = results.make_row(sweep=self.sweep, sweep_dir=str(self.sweep_dir), **self._fields(variant),
                               status="failed", error=message)
        results.write_job(self.sweep_dir, variant.name, fingerprint, [row], suite=self.keys.suite, inputs=inputs)

    def _identity(self, checkpoint) -> str:
        """Content identity of a checkpoint, computed once per process."""
        from wsm_exp.merging.identity import checkpoint_identity

        if checkpoint.path not in self._identities:
            self._identities[checkpoint.path] = checkpoint_identity(checkpoint)
        return self._identities[checkpoint.path]

    def _heldout_digest(self, path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]

    def _scored_heldout(self) -> Path | None:
        """The held-out file every variant is scored on: the source's, or with ``merge.fit.score_on=test`` the
        test split of the fit's split, written once under the fits folder (named by the file's digest and split)."""
        heldout = self.source.heldout()
        if heldout is None or self.fit_settings.score_on != "test":
            return heldout
        if self._scored is None:
            from wsm_exp.atomic import temp_path
            from wsm_exp.merging.heldout_split import split_heldout

            fit = self.fit_settings
            split = split_heldout(heldout, fit_fraction=fit.fit_fraction, seed=fit.seed)
            path = self.fits / f"heldout-test-{split.digest}-f{fit.fit_fraction:g}-s{fit.seed}.jsonl"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_path(path)
                tmp.write_text("".join(json.dumps({"text": t}) + "\n" for t in split.test_texts()))
                tmp.replace(path)
            self._scored = path
        return self._scored

    def _fields(self, variant: Variant) -> dict[str, Any]:
        return {**variant.row_fields(tokens_per_step=self.source.tokens_per_step,
                                     branch_start=self.source.branch_start, branch_steps=self.source.branch_steps),
                "eval_suite": self.keys.suite, "study": self.keys.study}

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

    def _fit(self, variant: Variant, checkpoints) -> tuple[list[float], dict[str, Any]]:
        """A fitted variant's weights and provenance (fitted on the fit split, or reused from the fits folder);
        the provenance is also kept in the sweep folder (``fits/<variant>.json``) for the report."""
        from wsm_exp.atomic import write_json_atomic
        from wsm_exp.merging.fit_lm import fit_or_reuse

        with library_output_to_log():
            fitted = fit_or_reuse(checkpoints, self.source.heldout(), fit_config(variant), self.fits,
                                  device=self.fit_settings.device)
        record = {"variant": variant.name, "seed": variant.seed, "steps": list(variant.steps),
                  "weights": fitted.weights, "provenance": fitted.provenance}
        (self.sweep_dir / "fits").mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.sweep_dir / "fits" / f"{variant.name}.json", record)
        return fitted.weights, fitted.provenance

    def _rows(self, variant: Variant, branch_paths: dict[str, Path]) -> tuple[list[dict[str, Any]], Variant,
                                                                              dict[str, Any] | None, bool]:
        """The variant's rows, the variant (a fitted one with its weights), its fit's provenance, and whether
        every score came from the score cache."""
        from wsm_exp.evaluation import evaluate
        from wsm_exp.evaluation.samples import write_samples
        from wsm_exp.sweep.planning import hf_pairing

        checkpoints = self._checkpoints(variant, branch_paths)
        hf_config = hf_pairing.paired_config(self.source.hf_config, checkpoints)  # a DCP series: HF folders
        fitted = self._fit(variant, checkpoints) if is_fitted(variant) else None
        if fitted is not None:  # from here on a normal merge of the fitted weights
            variant = dataclasses.replace(variant, weights=tuple(fitted[0]))
        heldout = self._scored_heldout()
        suite, stage, reason = self.stage_of(variant)
        with variant_model(variant, checkpoints, tokens_per_step=self.source.tokens_per_step, hf_config=hf_config,
                           merges=self.merges, keep=self.keep, shard_size_bytes=self.shard_size_bytes,
                           identity=self._identity, fitted=fitted) as (model, model_hash, merge_seconds):
            with library_output_to_log():
                evaluation = evaluate(model, suite, cache_dir=self.scores,
                                      extra_data={"heldout": heldout} if heldout else None, model_hash=model_hash)
        write_samples(self.sweep_dir, model_hash, evaluation.samples)  # per-document values for paired tests
        rows = results.score_rows(evaluation.scores, sweep=self.sweep, sweep_dir=str(self.sweep_dir),
                                  **self._fields(variant), model_hash=model_hash, merge_seconds=merge_seconds,
                                  eval_stage=stage, eval_reason=reason)
        from_cache = bool(evaluation.scores) and all(score.from_cache for score in evaluation.scores)
        return rows, variant, fitted[1] if fitted else None, from_cache


def _headline(rows: list[dict[str, Any]]) -> str:
    """The variant's one-line result: held-out bits per byte when measured, else how many tasks were scored.

    Overall and the suite's primary metric are printed at the end of the sweep, from the report's own
    table (wsm_exp/sweep/callbacks.py): the runner never averages scores itself.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    for row in ok:
        if row["task"] == "wsm_heldout_bpb" and row["metric"] == "bits_per_byte":
            return f"held-out bpb {row['value']:.4f}"
    tasks = {r["task"] for r in ok}
    return f"{len(tasks)} task(s) scored" if tasks else "no scores"


def _throughput(rows: list[dict[str, Any]]) -> str:
    """Evaluated tokens per second of each task the variant computed ("cached" when none was computed).

    >>> _throughput([{"task": "t", "tokens_per_second": 812.4, "eval_seconds": 2.0}])
    't 812'
    """
    rates = {r["task"]: r["tokens_per_second"] for r in rows if r.get("eval_seconds", 0) > 0
             and r.get("tokens_per_second") == r.get("tokens_per_second")}  # NaN: no count
    return ", ".join(f"{task} {rate:.0f}" for task, rate in rates.items()) or "cached"


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (``kill``, a Slurm preemption) unwinds like an error, so W&B runs are flushed and closed.

    Python's default would end the process at once and lose what W&B had not written yet. (SIGKILL
    cannot be caught: W&B's unflushed records are lost, but a rerun still resumes the training run.)
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
