"""Weights & Biases logging: one run per evaluated variant, a training run, a summary run per sweep.

Runs are offline by default (``WANDB_MODE=offline`` is set when ``wsm_exp`` is imported) and live
under ``<sweep_dir>/wandb/offline-run-<time>-<id>``, where the id starts with the run's name (the
variant), so ``ls wandb/*raw-E96-s0*`` finds a variant's run. Ids are stable per sweep folder and name:
a variant redone after a crash replaces its stale run; a training run resumed after a kill continues
its run (``resume="allow"``: the history before the kill stays, the new part is appended under the same id).
``logger=none`` turns all of it off. Upload later with ``wandb sync`` (docs/runner.md).

Example:
    >>> run_id(Path("/tmp/sweeps/duration"), "raw-E96-s0")[:11]
    'raw-E96-s0-'
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsm_exp.sweep.spec.schemas import LoggerConfig


def run_id(sweep_dir: Path, name: str) -> str:
    """Stable W&B run id for a named run of a sweep folder: the name (made id-safe) + a folder hash."""
    digest = hashlib.sha1(f"{Path(sweep_dir).resolve()}::{name}".encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)[:48]}-{digest}"


def start_run(cfg: LoggerConfig, sweep_dir: Path, sweep: str, name: str, *, job_type: str,
              config: dict[str, Any] | None = None, resume: bool = False):
    """A W&B run, or None when off: fresh (stale offline runs of its id removed) or, with ``resume``, continued."""
    if cfg.kind == "none":
        return None
    if cfg.kind != "wandb":
        from wsm_exp.sweep.spec.schemas import ConfigError

        raise ConfigError(f"logger.kind={cfg.kind!r} is not known; allowed: wandb, none (logger=none).")
    import wandb

    rid = run_id(sweep_dir, name)
    wandb_dir = Path(sweep_dir) / "wandb"
    if not resume:
        for stale in wandb_dir.glob(f"*-run-*-{rid}"):
            shutil.rmtree(stale, ignore_errors=True)
    wandb_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=cfg.project, entity=cfg.entity, group=sweep, name=name, id=rid,
                      job_type=job_type, tags=[sweep, *cfg.tags], config=config or {}, dir=str(sweep_dir),
                      reinit="finish_previous", resume="allow" if resume else None)


def log_variant(cfg: LoggerConfig, sweep_dir: Path, sweep: str, variant, rows: list[dict[str, Any]],
                fit: dict[str, Any] | None = None) -> None:
    """One run per variant: every variant field in config, scores as metrics against tokens; a fitted merge's
    ``fit`` provenance adds the fit's loss curve (``fit/*`` against ``fit/evaluation``), fresh or reused."""
    if cfg.kind == "none" or not rows:
        return
    first = rows[0]
    config = {k: first[k] for k in ("variant", "kind", "branch", "curve", "min_lr", "quantity",
                                    "interval_steps", "interval_tokens", "duration_steps", "duration_tokens",
                                    "end_step", "end_tokens", "branch_steps", "seed", "model_hash")}
    config["steps"], config["weights"] = list(variant.steps), list(variant.weights)
    run = start_run(cfg, sweep_dir, sweep, variant.name, job_type=variant.kind, config=config)
    run.define_metric("tokens")
    run.define_metric("eval/*", step_metric="tokens")
    if fit is not None:
        run.define_metric("fit/evaluation")
        run.define_metric("fit/*", step_metric="fit/evaluation")
        best = float("inf")
        for i, (loss, accepted, lr, weights) in enumerate(zip(fit["losses"], fit["accepted"], fit["lrs"],
                                                               fit["history"])):
            best = min(best, loss) if accepted else best
            run.log({"fit/evaluation": i, "fit/loss": loss, "fit/best_loss": best, "fit/lr": lr,
                     "fit/accepted": int(accepted), **{f"fit/w{j}": w for j, w in enumerate(weights)}})
        run.summary["fit/test_loss_start"], run.summary["fit/test_loss_end"] = fit["test_loss_start"], fit["test_loss_end"]
    metrics = {f"eval/{r['task']}/{r['metric']}": r["value"] for r in rows}
    run.log({"tokens": first["end_tokens"], **metrics})
    run.finish()


class LazyRun:
    """A run created on first use and continued across restarts: training logs only exist when something
    was trained, and a training resumed after a kill appends to the run it started."""

    def __init__(self, cfg: LoggerConfig, sweep_dir: Path, sweep: str, *, name: str, job_type: str):
        self._args = (cfg, sweep_dir, sweep, name)
        self._job_type = job_type
        self._run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self._run is None:
            self._run = start_run(*self._args, job_type=self._job_type, resume=True)
        if self._run is not None:
            self._run.log(metrics, step=step)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def log_summary(cfg: LoggerConfig, sweep_dir: Path, sweep: str, frame,
                also: Callable[[Any], None] | None = None) -> None:
    """The sweep's summary run: the whole results table, then ``also(run)`` (the report's tables and figures)."""
    if cfg.kind == "none":
        return
    import wandb

    run = start_run(cfg, sweep_dir, sweep, f"{sweep}-summary", job_type="summary",
                    config={"sweep": sweep, "sweep_dir": str(sweep_dir), "rows": len(frame)})
    table = frame.astype({c: "object" for c in frame.columns}).where(frame.notna(), None)
    run.log({"results": wandb.Table(dataframe=table)})
    run.summary["variants"] = int(frame["variant"].nunique())
    run.summary["failed"] = int((frame["status"] == "failed").sum())
    if also is not None:
        also(run)
    run.finish()
