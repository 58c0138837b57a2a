"""Hydra callbacks around a sweep: check every job before any work; gather, report and log after.

Registered in conf/config.yaml under ``hydra.callbacks``. ``python -m wsm_exp`` checks every job
before Hydra starts (wsm_exp/sweep/check/gate.py); when Hydra's own flags bypass that, the same
check runs here in ``on_multirun_start`` / ``on_run_start``, before any job. On
``on_multirun_end`` (and ``on_run_end`` for a single job) the job files become ``results.parquet``
+ ``results.csv``, the report is written, the summary W&B run is logged, and the sweep folder's
path is printed last. A planned variant without a result (e.g. of a cancelled Slurm job)
becomes a failed row. Any failed variant makes the command exit non-zero after all of that.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from wsm_exp.sweep.record.wrapup import exit_on_failure

log = logging.getLogger(__name__)


class SweepCallbacks(Callback):
    """Pre-flight checks (when ``wsm_exp.__main__`` did not run them) and end-of-sweep aggregation."""

    def __init__(self) -> None:
        self.started = time.time()  # job files written after this were computed by this run

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        preflight(config, kwargs.get("config_name"), multirun=False)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        preflight(config, kwargs.get("config_name"), multirun=True)
        from wsm_exp.sweep.stage.merge_stage import log_stage

        from wsm_exp.sweep.stage.screen import log_screen

        log_stage(config, kwargs.get("config_name"))  # every merge the jobs need, in one pass over their checkpoints
        log_screen(config, kwargs.get("config_name"))  # eval.staged: which variants get the full suite

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_failure(Path(config.paths.sweep_dir), self.started):  # Hydra would make an error a warning
            finalize(config, since=self.started, config_name=kwargs.get("config_name"), multirun=True)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_failure(Path(config.paths.sweep_dir), self.started):
            finalize(config, since=self.started, config_name=kwargs.get("config_name"), multirun=False)


def preflight(config: DictConfig, config_name: str | None, multirun: bool) -> None:
    """Check every job before any work (wsm_exp/sweep/check/gate.py); exit 2 with the reason, or 0 after a plan."""
    from wsm_exp.sweep.check import gate
    from wsm_exp.sweep.spec.schemas import ConfigError

    try:
        gate.run_in_hydra(config, config_name, multirun)
    except ConfigError as err:
        # Hydra turns a callback's exception into a warning and launches the jobs anyway;
        # SystemExit is the one way to stop before any job starts
        gate.refuse(err)
    if config.plan:
        sys.exit(0)


def finalize(config: DictConfig, since: float = 0.0, config_name: str | None = None, multirun: bool = False) -> None:
    """Gather results, write the report and the summary run, print the findings and the folder.

    Exits 1 when a variant failed or the report could not be written (after writing everything else; a stale
    report.md is removed), and, through ``exit_on_failure``, when anything here raises.
    """
    from wsm_exp.sweep.record import results, tracking
    from wsm_exp.sweep.record.console import FILE_ONLY, findings_text, scores_text
    from wsm_exp.sweep.run.workspace import sweep_paths
    from wsm_exp.sweep.spec.schemas import AnalysisConfig, LoggerConfig, from_node

    sweep, sweep_dir = sweep_paths(config)
    if not (sweep_dir / "jobs").is_dir():
        return  # the job failed before any result; Hydra reports its error and exits non-zero
    record_lost_variants(config, sweep, sweep_dir, config_name, multirun)
    frame = results.write_results(sweep_dir)
    report, report_error = None, ""
    try:
        from analysis import log_report_to_wandb, write_report
        from analysis.rules import Thresholds

        margins = from_node(AnalysisConfig, config.get("analysis") or {}, key="analysis")
        report = write_report([sweep_dir], thresholds=Thresholds(**dataclasses.asdict(margins)))
    except Exception as err:  # noqa: BLE001 — the results are safe; say why the report is missing
        log.info("report failed", exc_info=True, extra=FILE_ONLY)
        report_error = f"{type(err).__name__}: {err}"
        (Path(sweep_dir) / "report.md").unlink(missing_ok=True)  # the old report would contradict the results
    tracking.log_summary(from_node(LoggerConfig, config.logger, key="logger"), sweep_dir, sweep, frame,
                         also=None if report is None else functools.partial(log_report_to_wandb, report))
    failed = sorted(frame.loc[frame["status"] == "failed", "variant"].unique())
    ok = frame.loc[frame["status"] == "ok", "variant"].unique()
    computed = computed_here(sweep_dir, since)
    fresh = sum(name in computed for name in ok)
    if report is not None and len(report.tables.get("models", [])):
        models = report.tables["models"]
        primary = frame_primary(sweep_dir)
        if primary == "heldout_bpb" and models["heldout_bpb"].isna().all():
            primary = "overall"  # as analysis.report.build_tables decides
        print(scores_text(models, primary, reused=set(ok) - computed))
    findings = report.tables.get("findings") if report is not None else None
    if findings is not None and len(findings):
        from analysis.prose import console_text

        print(findings_text(console_text(findings)))
    print(f"{len(ok) + len(failed)} variant(s): {fresh} computed, {len(ok) - fresh} reused, {len(failed)} failed.")
    for name in failed:
        error = frame.loc[frame["variant"] == name, "error"].iloc[0]
        print(f"  FAILED {name}: {error}")
    if report is not None:
        print(f"Report: {report.path}")
    else:
        print(f"The report could not be written ({report_error}); the results are in {sweep_dir}, without a "
              "report.md (an older one would describe other results).")
    print(f"Sweep folder: {Path(sweep_dir)}")
    if failed or report is None:
        sys.exit(1)


def computed_here(sweep_dir: Path, since: float) -> set[str]:
    """Variants this run evaluated: job files written since it started, not served from the score cache."""
    import json

    names = set()
    for path in (Path(sweep_dir) / "jobs").glob("*.json"):
        if path.stat().st_mtime < since:
            continue
        try:
            if json.loads(path.read_text()).get("from_cache"):
                continue
        except (OSError, ValueError):
            pass
        names.add(path.stem.rsplit("@", 1)[0] if "@" in path.stem else path.stem)  # <variant>@<suite>.json
    return names


def frame_primary(sweep_dir: Path) -> str:
    """The suite's primary metric as the report reads it (analysis.load)."""
    from analysis.load import load_results

    frame = load_results(sweep_dir)
    return str(frame["primary"].iloc[0]) if len(frame) else "overall"


LOST = ("no result: its job ended without writing one (cancelled, killed, past its time or memory limit, or "
        "failed before reaching it; the launcher's log names the job). Rerun the same command to redo it.")


def record_lost_variants(config: DictConfig, sweep: str, sweep_dir: Path, config_name: str | None,
                         multirun: bool) -> None:
    """Write a failed row for every planned variant that has no job file (e.g. its Slurm job was cancelled)."""
    from wsm_exp.sweep.planning.compose import launched_jobs
    from wsm_exp.sweep.planning.job_plan import plan_job
    from wsm_exp.sweep.planning.sources import make_source
    from wsm_exp.sweep.record import folder, results
    from wsm_exp.sweep.spec.schemas import ConfigError

    for cfg in launched_jobs(config, config_name, multirun):
        if OmegaConf.select(cfg, "sft") is not None:
            continue  # an SFT job writes rows for epochs it discovers as it runs (wsm_exp/sweep/run/sft_job.py)
        try:
            source = make_source(cfg)
            plan = plan_job(cfg, source)
        except ConfigError:
            continue  # a job that cannot be planned reported its own error
        keys = folder.Keys.of(source.identity(), folder.eval_identity(cfg))
        for variant in [plan.variant, *plan.baselines]:
            if results.read_job(sweep_dir, variant.name, keys.suite) is not None:
                continue
            fields = variant.row_fields(tokens_per_step=source.tokens_per_step, branch_start=source.branch_start,
                                        branch_steps=source.branch_steps)
            row = results.make_row(sweep=sweep, sweep_dir=str(sweep_dir), **fields, eval_suite=keys.suite,
                                   study=keys.study, status="failed", error=LOST)
            results.write_job(sweep_dir, variant.name, "lost", [row], suite=keys.suite)
