"""Chance levels of the project's tasks, read from the one place they are declared: each task YAML's
``metadata.chance`` (1/choices for multiple choice, averaged over the documents; 0 for exact match and
generation; null for losses such as bits per byte, which have no chance level).

Example:
    >>> chance_level("wsm_piqa"), chance_level("wsm_lambada"), chance_level("wsm_heldout_bpb")
    (0.5, 0.0, None)
    >>> chance_level("arc_easy") is None   # a built-in lm-eval task declares none here
    True
"""

from __future__ import annotations

from functools import lru_cache

import yaml

from wsm_exp.evaluation.suites import TASK_DIR


class _TaskLoader(yaml.SafeLoader):
    """Safe YAML loader that reads lm-eval's ``!function`` tags as plain strings."""


_TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@lru_cache(maxsize=1)
def declared_chance() -> dict[str, float | None]:
    """task or group name -> its declared chance level (None where the task declares a loss)."""
    out: dict[str, float | None] = {}
    for path in sorted(TASK_DIR.rglob("*.yaml")):
        config = yaml.load(path.read_text(), Loader=_TaskLoader) or {}
        name = config.get("task") if isinstance(config.get("task"), str) else config.get("group")
        metadata = config.get("metadata") or {}
        if name and "chance" in metadata:
            out[name] = None if metadata["chance"] is None else float(metadata["chance"])
    return out


def chance_level(task: str) -> float | None:
    """The chance level of ``task`` as a fraction, or None (a loss, or a task that declares none)."""
    return declared_chance().get(task)
