"""Hydra callbacks around a sweep: check every job before any work; gather, report and log after.

Registered in conf/config.yaml under ``hydra.callbacks``. ``python -m wsm_exp`` checks every job
before Hydra starts (wsm_exp/sweep/preflight.py); when Hydra's own flags bypass that, the same
check runs here in ``on_multirun_start`` / ``on_run_start``, before any job. On
``on_multirun_end`` (and ``on_run_end`` for a single job) the job files become ``results.parquet``
+ ``results.csv``, the report is written, the summary W&B run is logged, and the sweep folder's
path is printed last. Any failed variant makes the command exit non-zero after all of that.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepCallbacks(Callback):
    """Pre-flight checks (when ``wsm_exp.__main__`` did not run them) and end-of-sweep aggregation."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        preflight(config, kwargs.get("config_name"), multirun=True)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        preflight(config, kwargs.get("config_name"), multirun=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finalize(config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        finalize(config)


def preflight(config: DictConfig, config_name: str | None, multirun: bool) -> None:
    """Check every job before any work (wsm_exp/sweep/preflight.py); exit 2 with the reason, or 0 after a plan."""
    from wsm_exp.sweep import preflight as checks
    from wsm_exp.sweep.config import ConfigError

    try:
        checks.run_in_hydra(config, config_name, multirun)
    except ConfigError as err:
        # Hydra turns a callback's exception into a warning and launches the jobs anyway;
        # SystemExit is the one way to stop before any job starts
        checks.refuse(err)
    if config.plan:
        sys.exit(0)


def finalize(config: DictConfig) -> None:
    """Gather results, write the report and the summary run, print the folder; exit 1 on failures."""
    from wsm_exp.sweep import results, tracking
    from wsm_exp.sweep.config import LoggerConfig, from_node
    from wsm_exp.sweep.job import sweep_paths

    sweep, sweep_dir = sweep_paths(config)
    if not (sweep_dir / "jobs").is_dir():
        return  # the job failed before any result; Hydra reports its error and exits non-zero
    frame = results.write_results(sweep_dir)
    report = None
    try:
        from analysis import write_report

        report = write_report([sweep_dir])
    except Exception as err:  # noqa: BLE001 — the results are safe; say why the report is missing
        log.exception("report failed: %s", err)
        print(f"The report could not be written ({type(err).__name__}: {err}); results are in {sweep_dir}.")
    tracking.log_summary(from_node(LoggerConfig, config.logger, key="logger"), sweep_dir, sweep, frame, report)
    failed = sorted(frame.loc[frame["status"] == "failed", "variant"].unique())
    ok = frame.loc[frame["status"] == "ok", "variant"].nunique()
    print(f"{ok} variant(s) evaluated, {len(failed)} failed.")
    for name in failed:
        error = frame.loc[frame["variant"] == name, "error"].iloc[0]
        print(f"  FAILED {name}: {error}")
    print(f"Sweep folder: {Path(sweep_dir)}")
    if failed:
        sys.exit(1)
