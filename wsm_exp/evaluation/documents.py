"""What a task of a suite evaluates: how many documents, and how many requests and characters each.

lm-eval applies ``limit`` to every task it runs, so a group (``wsm_mmlu``: 57 subjects) runs up to
``limit`` documents per subject, and a task never runs more documents than its test split holds.
The counts come from the same loaders lm-eval calls (the task YAML's ``custom_dataset``), read once
per process; nothing is evaluated. The held-out loss counts the pieces its file is cut into. Every
count of documents a plan shows (its time and its staged cost) comes from ``documents``.

The forward passes a document costs and their characters are ``SHAPES``, measured once on lm-eval's
own requests; the held-out loss's characters come from its file where it exists.

Example:
    >>> subtasks("wsm_mmlu")[:2], len(subtasks("wsm_mmlu")), subtasks("wsm_piqa")
    (['wsm_mmlu_abstract_algebra', 'wsm_mmlu_anatomy'], 57, ['wsm_piqa'])
    >>> documents("wsm_piqa", limit=50), documents("wsm_mmlu", limit=3)
    (50, 171)
    >>> shape("wsm_piqa"), shape("wsm_sft_add").generated_tokens
    (Shape(requests=2.0, characters=161.0, generated_tokens=0), 8)
"""

from __future__ import annotations

import importlib
import re
import statistics
from dataclasses import dataclass
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


# (forward passes per document, characters per pass) of lm-eval's requests for the first 100 documents of
# each task (MMLU: every 7th subject), context and continuation counted (a generation: its prompt); choices
# of one character (MMLU's letters) share one pass over their context: `python benchmarks/task_sizes.py`
# (2026-12-06). The held-out loss's characters come from its file when it exists.
SHAPES = {
    "wsm_heldout_bpb": (1, 368), "wsm_piqa": (2, 161), "wsm_arc_easy": (4, 162), "wsm_arc_challenge": (4, 206),
    "wsm_openbookqa": (4, 76), "wsm_commonsense_qa": (1, 153), "wsm_hellaswag": (4, 197),
    "wsm_winogrande": (2, 105), "wsm_boolq": (2, 621), "wsm_lambada": (1, 322), "wsm_basic_arithmetic": (3.8, 22),
    "wsm_gsm8k_bpb": (1, 531), "wsm_math_bpb": (1, 525), "wsm_humaneval_bpb": (1, 540), "wsm_mbpp_bpb": (1, 538),
    "wsm_mmlu": (1, 556), "wsm_gsm8k": (1, 2510), "wsm_math": (1, 1956), "wsm_humaneval": (1, 386),
    "wsm_mbpp": (1, 358), "wsm_sft_copy": (1, 35), "wsm_sft_add": (1, 34), "wsm_sft_max": (1, 43),
}
DEFAULT_SHAPE = (4, 300)  # a task not measured (lm-eval's built-ins): a four-way multiple choice of ~75 tokens


@dataclass(frozen=True)
class Shape:
    """What one document of a task asks of the model."""

    requests: float  # forward sequences per document: log-likelihood choices (one-letter ones share one), generations
    characters: float  # characters each reads (context + continuation; a generation's prompt)
    generated_tokens: int = 0  # a generative task's max_gen_toks: forward passes per batch of requests


def shape(task: str, heldout_path: str | None = None) -> Shape:
    """Requests per document of ``task``, their characters and its generated tokens (see ``SHAPES``)."""
    requests, characters = SHAPES.get(task, DEFAULT_SHAPE)
    if heldout_path and task.endswith("heldout_bpb") and (data := _test_split(task, heldout_path)):
        characters = statistics.mean(len(text) for text in data["text"])
    path = _task_files().get(task)
    text = path.read_text() if path else ""
    generated = re.search(r"max_gen_toks:\s*(\d+)", text) if "generate_until" in text else None
    if generated:
        requests = 1
    return Shape(float(requests), float(characters), int(generated.group(1)) if generated else 0)


def data_size(task: str, heldout_path: str | None = None) -> int | None:
    """Documents in one task's test split (None when the task is not one of the project's or its data is absent)."""
    data = _test_split(task, heldout_path)
    return None if data is None else len(data)


@lru_cache(maxsize=None)
def _test_split(task: str, heldout_path: str | None = None):
    """One task's test split from its loader (None when the task is not one of the project's or its data is absent)."""
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
    return data["test"]


def documents(task: str, limit: int | None, heldout_path: str | None = None) -> int | None:
    """Documents ``task`` evaluates under ``limit`` (per subtask), or None when neither limit nor data says."""
    total = 0
    for name in subtasks(task):
        size = data_size(name, heldout_path)
        if size is None and limit is None:
            return None
        total += min(x for x in (size, limit) if x is not None)
    return total
