"""The gate before any work: every job of a command composed and checked, then the plan printed or the folder claimed.

``python -m wsm_exp`` calls ``run_command`` before Hydra starts; the callbacks call ``run_in_hydra``
when Hydra's own flags bypassed that (then Hydra is initialised already). One problem in any job
stops the whole command: ``refuse`` prints one paragraph and exits 2, nothing written. With
``plan=true`` the preview (``check.preview``) is printed instead, and nothing is written either.

Example:
    >>> from wsm_exp.sweep.check.gate import run_command   # run_command(args, config_dir) -> checked jobs
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig, OmegaConf

from wsm_exp.sweep.check.preflight import CheckedJob, check_jobs
from wsm_exp.sweep.check.preview import render
from wsm_exp.sweep.planning.compose import compose_command, compose_job, expand_jobs
from wsm_exp.sweep.record import folder
from wsm_exp.sweep.spec.schemas import ConfigError

CHECKED = False  # set once this process checked its command: the callbacks then skip it


def run_command(args: list[str], config_dir: Path) -> list[CheckedJob] | None:
    """The pre-flight of ``python -m wsm_exp <args>``: compose and check every job; print the plan instead
    when ``plan=true`` (then None). On success the sweep folder is claimed and the callbacks skip their check."""
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        base, jobs, configs = compose_command(args)
        checked = check_jobs(jobs, configs)
    return _plan_or_claim(base, checked)


def run_in_hydra(config: DictConfig, config_name: str | None, multirun: bool) -> None:
    """The same pre-flight from Hydra's callbacks (commands with Hydra's own flags); Hydra is initialised."""
    if CHECKED:
        return
    task = list(config.hydra.overrides.task)
    if multirun:
        jobs = expand_jobs(OmegaConf.select(config, "hydra.sweeper.params") or {}, task)
        configs = [compose_job(job, config_name or "config") for job in jobs]
    else:
        jobs, configs = [task], [config]
    _plan_or_claim(config, check_jobs(jobs, configs))


def _plan_or_claim(base: DictConfig, checked: list[CheckedJob]) -> list[CheckedJob] | None:
    global CHECKED
    if base.plan:
        print(render(checked))
        return None
    claim(checked)
    CHECKED = True
    return checked


def claim(jobs: list[CheckedJob]) -> None:
    """Record the sweep folder's study and suite (sweep.json) once every job passed."""
    for job in {job.keys.folder: job for job in jobs}.values():  # one: several were refused
        folder.claim(Path(job.cfg.paths.sweep_dir), job.keys.folder, job.keys.payload)


def refuse(err: ConfigError) -> NoReturn:
    """Print the paragraph and exit 2 (no traceback); under ``HYDRA_FULL_ERROR=1`` raise it instead."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"Error: {err}", file=sys.stderr)
    sys.exit(2)
