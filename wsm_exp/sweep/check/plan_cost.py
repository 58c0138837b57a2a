"""What a plan's evaluation costs: documents per task (one count for the time and the staged line) and seconds.

Every document count a plan prints comes from ``suite_documents``, which asks
wsm_exp.evaluation.documents (limits per subtask, capped by the data) and, before the study has written
its held-out file, caps the held-out loss at the articles it will write. The seconds per task come from
wsm_exp.sweep.check.estimate.

Example:
    >>> from types import SimpleNamespace as NS
    >>> suite = NS(tasks=["wsm_piqa", "wsm_mmlu"], limit=2, limits={"wsm_piqa": 5}, screen_limit=50)
    >>> suite_documents(suite, heldout=None, unbuilt=None)
    {'wsm_piqa': 5, 'wsm_mmlu': 114}
    >>> suite_documents(suite, heldout=None, unbuilt=None, limit=1)
    {'wsm_piqa': 1, 'wsm_mmlu': 57}
"""

from __future__ import annotations

from wsm_exp.evaluation.documents import documents, shape, subtasks
from wsm_exp.sweep.check.estimate import Machine, task_seconds


def suite_documents(suite, *, heldout: str | None, unbuilt: int | None, limit: int | None = None) -> dict:
    """Documents each task of ``suite`` evaluates per model (None: unknown, a task without a limit whose
    data are not the project's); ``limit`` given: every task at that limit (a screen), else the suite's
    limits. ``unbuilt``: the held-out articles the study will write (its file does not exist yet; each
    article is at least one document)."""
    counts = {}
    for task in suite.tasks:
        cap = limit if limit is not None else dict(suite.limits or {}).get(task, suite.limit)
        if unbuilt is not None and task.endswith("heldout_bpb"):
            cap = unbuilt if cap is None else min(int(cap), unbuilt)
        counts[task] = documents(task, None if cap is None else int(cap), heldout)
    return counts


def task_costs(suite, counts: dict, *, parameters: int, heldout: str | None, past,
               machine: Machine) -> dict[str, tuple[float, str]]:
    """(seconds, 'measured' or 'prior') of each task for one model."""
    return {task: task_seconds(task, counts[task] or 0, parameters, str(suite.device), past,
                               subtasks=len(subtasks(task)), shape=shape(task, heldout),
                               batch=int(suite.batch_size), machine=machine)
            for task in suite.tasks}


def staged_cost_line(counts: dict, screen_counts: dict, *, heldout_screen: bool, baselines: int,
                     candidates: int, todo: int) -> str:
    """Evaluation cost unstaged vs ``eval.staged=true`` in documents scored, for the variants still to run.

    Staged: every merge variant's screen (held-out bpb, reused by the full suite, or each task at
    ``eval.screen_limit``), the full suite for the baselines and for the variants the screen keeps:
    at least the best one, at most all.

    >>> staged_cost_line({"wsm_heldout_bpb": 20, "b": 8}, {}, heldout_screen=True, baselines=1, candidates=3,
    ...                  todo=4)  # doctest: +ELLIPSIS
    '  evaluation cost (documents scored): unstaged 112; eval.staged=true 96..112 (screen 20 per variant ...'
    """
    full = sum(c or 0 for c in counts.values())
    held = [c or 0 for t, c in counts.items() if t.endswith("heldout_bpb")]
    screen = held[0] if heldout_screen else sum(c or 0 for c in screen_counts.values())
    rest = full - screen if heldout_screen else full  # a held-out screen is the full suite's own first task
    low = candidates * screen + baselines * full + min(1, candidates) * rest
    high = candidates * (screen + rest) + baselines * full
    unknown = sorted(t for t, c in counts.items() if c is None)
    return (f"  evaluation cost (documents scored): unstaged {todo * full}; eval.staged=true "
            f"{low}..{high} (screen {screen} per variant on {'held-out bpb' if heldout_screen else 'every task'}, "
            f"full {full} for {baselines} baseline(s) and the variants the screen keeps, at least the best)"
            + (f"; not counted: {', '.join(unknown)} (no limit, data unknown)" if unknown else ""))
