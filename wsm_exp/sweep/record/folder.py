"""One sweep folder holds one study (or series) and one eval suite, whatever the seeds and merges.

Variant names describe the merge, not the model being merged or the suite, so results of another
study or suite in the same folder would be mixed into the same tables (or replace each other).
The first job records the folder's identity in ``sweep.json``; a later sweep with another study or
suite under the same ``sweep_name`` is refused before any work.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> claim(folder, "abc", {"eval": "tiny"}); check(folder, "abc")
    >>> check(folder, "other", {"eval": "benchmarks"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.spec.schemas.ConfigError: Sweep folder ... The settings that differ: eval: 'tiny' → 'benchmarks'...
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from wsm_exp.atomic import write_json_atomic
from wsm_exp.keys import content_key
from wsm_exp.sweep.spec.schemas import ConfigError, MergeFitConfig

RECORD = "sweep.json"


EXECUTION = ("device", "batch_size", "staged", "screen_limit")
"""Eval settings that say how, not what, is measured: they may change within a folder (freshness still
recomputes the variants they touch)."""


def eval_identity(cfg) -> dict[str, Any]:
    """What a job's suite measures: ``cfg.eval``, plus the held-out split when ``merge.fit.score_on=test``
    scores the held-out loss on the test documents only (its rows never mix with full-file scores).

    >>> eval_identity(OmegaConf.create({"eval": {"name": "tiny"}, "merge": {"fit": {"score_on": "test"}}}))
    {'name': 'tiny', 'heldout_split': {'score_on': 'test', 'fit_fraction': 0.5, 'seed': 0}}
    """
    identity = OmegaConf.to_container(cfg.eval, resolve=True)
    fit = OmegaConf.select(cfg, "merge.fit")
    if fit is not None and fit.get("score_on") == "test":
        defaults = MergeFitConfig()
        identity["heldout_split"] = {"score_on": "test", "fit_fraction": fit.get("fit_fraction", defaults.fit_fraction),
                                     "seed": fit.get("seed", defaults.seed)}
    return identity


def identity(source_identity: dict[str, Any], eval_identity: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(key, payload): the study or series without its seed, and what the eval suite measures."""
    payload = {"source": {k: v for k, v in source_identity.items() if k != "seed"},
               "eval": {k: v for k, v in eval_identity.items() if k not in EXECUTION}}
    key = content_key(payload, length=16)
    return key, payload


@dataclass(frozen=True)
class Keys:
    """A job's identity keys: the folder's (study + suite), the suite's alone and the study's alone."""

    folder: str
    payload: dict[str, Any]
    suite: str  # what the eval suite measures (device and batch size left out)
    study: str  # the study or series, without seed

    @classmethod
    def of(cls, source_identity: dict[str, Any], eval_identity: dict[str, Any]) -> "Keys":
        key, payload = identity(source_identity, eval_identity)
        return cls(key, payload, _digest(payload["eval"]), _digest(payload["source"]))


def _digest(value: Any) -> str:
    return content_key(value, length=8)


def check(sweep_dir: Path, key: str, payload: dict[str, Any] | None = None) -> None:
    """Raise ConfigError when ``sweep_dir`` was claimed by another study or suite, naming what differs."""
    path = Path(sweep_dir) / RECORD
    if not path.is_file():
        return
    recorded = json.loads(path.read_text())
    if recorded.get("key") != key:
        differ = _differences(recorded, payload) if payload else []
        what = f" The settings that differ: {'; '.join(differ)}." if differ else ""
        raise ConfigError(
            f"Sweep folder {sweep_dir} already holds results of another study or eval suite (recorded in "
            f"{path}); their rows would be mixed with these.{what} Either give this run its own folder "
            "(sweep_name=...), or delete the old folder to start over."
        )


def _differences(recorded: dict[str, Any], payload: dict[str, Any]) -> list[str]:
    """``key: old → new`` for every dotted key whose value differs (the study's under model/data/train)."""
    old, new = _flat(recorded.get("source", {}), ""), _flat(payload.get("source", {}), "")
    old.update(_flat(recorded.get("eval", {}), "eval."))
    new.update(_flat(payload.get("eval", {}), "eval."))
    return [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def claim(sweep_dir: Path, key: str, payload: dict[str, Any]) -> None:
    """Record the folder's identity (once)."""
    path = Path(sweep_dir) / RECORD
    if not path.is_file():
        write_json_atomic(path, {"key": key, **payload})
