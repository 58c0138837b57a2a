"""Seconds a plan will take, from past evaluations recorded on this machine (pure arithmetic, no I/O).

Evaluation: a task costs ``TASK_SECONDS`` plus seconds per document, measured by earlier evaluations
of that task on the same device (wsm_exp.timings): the median of the most recent records
of the model size nearest to the one planned, scaled by parameters^``PARAMETER_EXPONENT``. Without a
record for the task and device: the documented prior ``PRIOR_SECONDS_PER_DOCUMENT`` (the tiny model on
2 CPU cores), scaled the same way.
Each evaluated model also costs ``LOAD_SECONDS`` (loading it into lm-eval; merging it when needed), and
a command that evaluates anything ``STARTUP_SECONDS`` once (importing lm-eval, indexing its tasks).
Every command costs ``COMMAND_SECONDS`` (start, pre-flight, report), one that trains also
``STUDY_SETUP_SECONDS``; these three are priors measured on 2 loaded CPU cores, not calibrated.

Training (the embedded study): the seconds per token its earlier segments recorded (nearest model
size, scaled by parameters^``PARAMETER_EXPONENT``); without any, the measured step rate of the tiny
and small studies on 2 CPU cores, scaled by tokens per step and parameters^``PARAMETER_EXPONENT``.

Example:
    >>> from wsm_exp.timings import TRAIN_TASK, Timing
    >>> past = [Timing("wsm_piqa", 200, 4.0, 1_000_000, "cpu")]
    >>> task_seconds("wsm_piqa", 400, 1_000_000, "cpu", past)
    (7.2, 'measured')
    >>> task_seconds("wsm_piqa", 400, 1_000_000, "cuda", past)[1]
    'prior'
    >>> rough_study_seconds(steps=2012, tokens_per_step=2048, parameters=164_352)
    185.1
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from wsm_exp.timings import TRAIN_TASK, Timing

# Measured on 2 CPU cores: the tiny study (164k parameters, 2048 tokens/step) trains at ~0.092 s per
# step; the small one (12.2M parameters, 4096 tokens/step) at ~2.8 s: cost ∝ tokens · parameters^0.63.
TINY_SECONDS_PER_STEP, TINY_TOKENS, TINY_PARAMETERS, PARAMETER_EXPONENT = 0.092, 2048, 164_352, 0.63
PRIOR_SECONDS_PER_DOCUMENT = 0.01  # lm-eval on the tiny model, 2 CPU cores: ~2 s per task at 200 documents
TASK_SECONDS = 0.8  # per task and model, whatever its size: lm-eval building the task (micro model, 2 cores)
SUBTASK_SECONDS = 0.05  # per further subtask of a group (MMLU's 57 subjects at limit 2: ~5 s in all, 2 cores)
LOAD_SECONDS = 1.0  # per evaluated model: lm-eval loading a small model on CPU
STARTUP_SECONDS = 5.0  # once per command that evaluates: importing lm-eval, indexing the tasks (2 cores)
COMMAND_SECONDS = 20.0  # once per command: Python, Hydra, the pre-flight, the report and its figures (2 cores)
STUDY_SETUP_SECONDS = 10.0  # once per command that trains: the study's data, tokenizer and model built (2 cores)
RECENT = 20  # records per task and size the median is taken over: the machine's present speed


def task_seconds(task: str, documents: int, parameters: int, device: str, past: Sequence[Timing],
                 subtasks: int = 1) -> tuple[float, str]:
    """Seconds to evaluate ``documents`` of ``task`` on a model of ``parameters`` on ``device``, and whether
    the rate was ``measured`` (past records of the task on the device) or the ``prior``.

    A task costs a fixed part (building it) plus a part per document that grows with the model; the
    fixed part is ``TASK_SECONDS`` (plus ``SUBTASK_SECONDS`` per further subtask of a group such as MMLU's
    57 subjects), or less where a past run of the task took less in all.
    """
    same = [t for t in past if t.task == task and t.device == device]
    if not same:
        fixed = TASK_SECONDS + (subtasks - 1) * SUBTASK_SECONDS
        return fixed + documents * _scaled(PRIOR_SECONDS_PER_DOCUMENT, TINY_PARAMETERS, parameters), "prior"
    distance = {t: abs(math.log(t.parameters / parameters)) for t in same}
    nearest = min(distance.values())
    chosen = [t for t in same if distance[t] <= nearest + 1e-9][-RECENT:]
    fixed = min(TASK_SECONDS + (subtasks - 1) * SUBTASK_SECONDS, 0.9 * min(t.seconds for t in chosen))
    rate = statistics.median(_scaled((t.seconds - fixed) / t.documents, t.parameters, parameters) for t in chosen)
    return round(fixed + documents * rate, 3), "measured"


def _scaled(rate: float, measured_at: int, parameters: int) -> float:
    return rate * (parameters / measured_at) ** PARAMETER_EXPONENT


def rough_study_seconds(*, steps: int, tokens_per_step: int, parameters: int) -> float:
    """Seconds to train ``steps`` steps of the embedded study on 2 CPU cores (the prior)."""
    scale = (tokens_per_step / TINY_TOKENS) * (parameters / TINY_PARAMETERS) ** PARAMETER_EXPONENT
    return round(steps * TINY_SECONDS_PER_STEP * scale, 1)


def study_seconds(*, steps: int, tokens_per_step: int, parameters: int,
                  past: Sequence[Timing]) -> tuple[float, str]:
    """Seconds to train ``steps`` steps: the study's recorded seconds per token (training records of the
    nearest model size, scaled by parameters^``PARAMETER_EXPONENT``), else the prior.

    >>> study_seconds(steps=100, tokens_per_step=256, parameters=1000,
    ...               past=[Timing(TRAIN_TASK, 50, 10.0, 1000, "cpu", tokens=50 * 256)])
    (20.0, 'measured')
    """
    trained = [t for t in past if t.task == TRAIN_TASK and t.tokens > 0]
    if not trained:
        return rough_study_seconds(steps=steps, tokens_per_step=tokens_per_step, parameters=parameters), "prior"
    distance = {t: abs(math.log(t.parameters / parameters)) for t in trained}
    nearest = min(distance.values())
    chosen = [t for t in trained if distance[t] <= nearest + 1e-9][-RECENT:]
    per_token = statistics.median(_scaled(t.seconds / t.tokens, t.parameters, parameters) for t in chosen)
    return round(steps * tokens_per_step * per_token, 1), "measured"
