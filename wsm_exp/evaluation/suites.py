"""Eval suites (conf/eval/*.yaml): which lm-eval tasks, their categories and limits.

Example:
    >>> s = SuiteConfig(name="x", tasks=["wsm_piqa"], categories={"wsm_piqa": "language"}, limit=10)
    >>> s.limit_for("wsm_piqa"), s.category_of("wsm_piqa")
    (10, 'language')
    >>> SuiteConfig(tasks=["wsm_heldout_bpb"], primary="heldout_bpb").primary
    'heldout_bpb'
    >>> SuiteConfig(categories={"wsm_piqa": "general-knowledge"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: eval.categories.wsm_piqa='general-knowledge' is not a report category; allowed: ...
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field
from pathlib import Path

TASK_DIR = Path(__file__).with_name("tasks")
PRIMARY_METRICS = ("overall", "heldout_bpb")  # what "better" claims are judged on (analysis/findings.py)
CATEGORIES = ("general_knowledge", "language", "math", "code", "professional_knowledge", "heldout", "other",
              "reason")  # reason: a column of the paper's SFT table (Table 2; the wsm_sft_max task)


@dataclass(frozen=True)
class SuiteConfig:
    """An lm-eval suite and how to run it."""

    name: str = "tiny"  # label in results and cache keys
    tasks: list[str] = field(default_factory=list)  # lm-eval task or group names
    categories: dict[str, str] = field(default_factory=dict)  # task -> paper-style category for reports
    limit: int | None = None  # docs per task (None = all); small limits keep sweeps fast
    limits: dict[str, int] = field(default_factory=dict)  # per-task overrides of limit
    num_fewshot: int | None = None  # None = each task's default (0 for the project's tasks)
    seed: int = 1234  # lm-eval's sampling/fewshot seed, fixed so reruns are identical
    batch_size: int = 16  # requests per forward pass; CPU memory is not the bottleneck here
    device: str = "cpu"  # "cuda" on GPU machines
    dtype: str = "float32"  # evaluation precision; bfloat16 on GPUs for large models
    builtin: bool = False  # also index lm-eval's built-in tasks (the lm_eval suite; costs ~4 s)
    allow_code_execution: bool = False  # run model-written code (wsm_humaneval, wsm_mbpp pass@1); off: unsafe
    primary: str = "overall"  # the metric "better" claims are judged on; the other is shown beside it
    staged: bool = False  # true: screen every variant cheaply, full suite only for those that can win (docs/evaluation.md)
    screen_limit: int = 50  # docs per task in a screen without held-out bpb: enough for a standard error, ~cheap

    def __post_init__(self) -> None:
        if self.primary not in PRIMARY_METRICS:
            raise ValueError(f"eval.primary={self.primary!r} is not a primary metric; allowed: "
                             f"{', '.join(PRIMARY_METRICS)} (held-out bits per byte, or the overall score).")
        wrong = {task: cat for task, cat in self.categories.items() if cat not in CATEGORIES}
        if wrong:
            task, cat = next(iter(wrong.items()))
            raise ValueError(f"eval.categories.{task}={cat!r} is not a report category; allowed: "
                             f"{', '.join(CATEGORIES)}. Fix the spelling, or the task drops out of every table.")

    def screen(self, heldout: bool) -> SuiteConfig:
        """The cheap suite of ``staged`` screens: held-out bits per byte alone when measured (its cache entry
        is the full suite's), else every task at ``screen_limit`` documents.

        >>> SuiteConfig(tasks=["a", "wsm_heldout_bpb"]).screen(heldout=True).tasks
        ['wsm_heldout_bpb']
        >>> SuiteConfig(tasks=["a"], limit=500, screen_limit=20).screen(heldout=False).limit_for("a")
        20
        """
        if heldout and "wsm_heldout_bpb" in self.tasks:
            return dataclasses.replace(self, tasks=["wsm_heldout_bpb"])
        return dataclasses.replace(self, limit=self.screen_limit, limits={})

    def limit_for(self, task: str) -> int | None:
        return self.limits.get(task, self.limit)

    def category_of(self, task: str) -> str:
        return self.categories.get(task, "heldout" if task.endswith("heldout_bpb") else "other")
