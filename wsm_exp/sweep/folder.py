"""One sweep folder holds one study (or series) and one eval suite, whatever the seeds and merges.

Variant names describe the merge, not the model being merged or the suite, so results of another
study or suite in the same folder would be mixed into the same tables (or replace each other).
The first job records the folder's identity in ``sweep.json``; a later sweep with another study or
suite under the same ``sweep_name`` is refused before any work.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> claim(folder, "abc", {"eval": "tiny"}); check(folder, "abc")
    >>> check(folder, "other")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.config.ConfigError: Sweep folder ... already holds results of another study or eval suite...
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wsm_exp.atomic import write_json_atomic
from wsm_exp.sweep.config import ConfigError

RECORD = "sweep.json"


def identity(source_identity: dict[str, Any], eval_identity: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(key, payload): the study or series without its seed, and the eval suite."""
    payload = {"source": {k: v for k, v in source_identity.items() if k != "seed"}, "eval": eval_identity}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return key, payload


def check(sweep_dir: Path, key: str) -> None:
    """Raise ConfigError when ``sweep_dir`` was claimed by another study or suite."""
    path = Path(sweep_dir) / RECORD
    if not path.is_file():
        return
    recorded = json.loads(path.read_text())
    if recorded.get("key") != key:
        raise ConfigError(
            f"Sweep folder {sweep_dir} already holds results of another study or eval suite (recorded in "
            f"{path}); their rows would be mixed with these. Give this run its own folder (sweep_name=...), "
            "or delete the old one."
        )


def claim(sweep_dir: Path, key: str, payload: dict[str, Any]) -> None:
    """Record the folder's identity (once)."""
    path = Path(sweep_dir) / RECORD
    if not path.is_file():
        write_json_atomic(path, {"key": key, **payload})
