"""What every kind of job shares: the sweep's name and folder, and the per-variant lock.

The merge-variant job (``run.job``) and the SFT job (``run.sft_job``) write their rows into the
same ``<sweep folder>/jobs/`` and take the same lock per variant, so two jobs sharing a baseline
evaluate it once.

Example:
    >>> from omegaconf import OmegaConf
    >>> sweep_paths(OmegaConf.create({"sweep_name": "duration", "paths": {"sweep_dir": "/s/duration"}}))
    ('duration', PosixPath('/s/duration'))
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from wsm_exp.atomic import file_lock


def sweep_paths(cfg: DictConfig) -> tuple[str, Path]:
    """(sweep name, sweep folder) from the config."""
    return str(cfg.sweep_name), Path(cfg.paths.sweep_dir)


def variant_lock(sweep_dir: Path, name: str):
    """Exclusive per-variant lock, so parallel jobs sharing a baseline evaluate it once."""
    return file_lock(Path(sweep_dir) / "jobs" / f".{name}.lock")
