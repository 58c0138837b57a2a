"""How many documents a task of a suite evaluates: its limit, per subtask for groups, capped by the data.

lm-eval applies ``limit`` to every task it runs, so a group (``wsm_mmlu``: 57 subjects) runs up to
``limit`` documents per subject, and a task never runs more documents than its test split holds.
The counts come from the same loaders lm-eval calls (the task YAML's ``custom_dataset``), read once
per process; nothing is evaluated. The held-out loss counts the pieces its file is cut into.

Example:
    >>> subtasks("wsm_mmlu")[:2], len(subtasks("wsm_mmlu")), subtasks("wsm_piqa")
    (['wsm_mmlu_abstract_algebra', 'wsm_mmlu_anatomy'], 57, ['wsm_piqa'])
    >>> documents("wsm_piqa", limit=50), documents("wsm_mmlu", limit=3)
    (50, 171)
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
from pathlib import Path

import datasets

from wsm_exp.evaluation.suites import TASK_DIR


@lru_cache(maxsize=None)
def _task_files() -> dict[str, Path]:
    """task or group name -> its YAML file."""
    out = {}
    for path in TASK_DIR.rglob("*.yaml"):
        match = re.search(r"^(?:task|group):\s*(\S+)\s*$", path.read_text(), re.MULTILINE)
        if match:
            out[match.group(1)] = path
    return out


def subtasks(task: str) -> list[str]:
    """The tasks lm-eval runs for ``task``: a group's members, or the task itself."""
    path = _task_files().get(task)
    if path is None:
        return [task]
    text = path.read_text()
    if not re.search(r"^group:", text, re.MULTILINE):
        return [task]
    return re.findall(r"^\s+-\s+(\S+)\s*$", text.split("task:", 1)[1], re.MULTILINE)


@lru_cache(maxsize=None)
def data_size(task: str, heldout_path: str | None = None) -> int | None:
    """Documents in one task's test split (None when the task is not one of the project's or its data is absent)."""
    path = _task_files().get(task)
    if path is None:
        return None
    text = path.read_text()
    if "include:" in text:
        text = text + (path.parent / re.search(r"include:\s*(\S+)", text).group(1)).read_text()
    loader = re.search(r"custom_dataset:\s*!function\s+(\w+)\.(\w+)", text)
    if loader is None:
        return None
    metadata = {"subject": m.group(1)} if (m := re.search(r"subject:\s*(\w+)", text)) else {}
    package = ".".join(("wsm_exp.evaluation.tasks", *path.parent.relative_to(TASK_DIR).parts))
    module = importlib.import_module(f"{package}.{loader.group(1)}")
    datasets.disable_progress_bars()  # the loaders' map() bars: a plan prints only the plan
    try:
        data = getattr(module, loader.group(2))(heldout_path=heldout_path, **metadata)
    except (FileNotFoundError, OSError):
        return None  # e.g. a held-out file not written yet: the caller assumes the limit
    finally:
        datasets.enable_progress_bars()
    return len(data["test"])


def documents(task: str, limit: int | None, heldout_path: str | None = None) -> int | None:
    """Documents ``task`` evaluates under ``limit`` (per subtask), or None when neither limit nor data says."""
    total = 0
    for name in subtasks(task):
        size = data_size(name, heldout_path)
        if size is None and limit is None:
            return None
        total += min(x for x in (size, limit) if x is not None)
    return total
