"""Seconds a plan will take: from past timings on this machine, else from priors scaled by a probe of it now.

Evaluation of one task, with records of that task on the same device for a model within
``PARAMETER_SPAN``× of the planned size (wsm_exp.timings): a fixed part plus the median seconds per
document of the most recent of them, scaled by parameters^``PARAMETER_EXPONENT``. Without such records,
the prior (``Machine``: what wsm_exp.sweep.check.speed measured at plan time)::

    factor · (TASK + (subtasks − 1) · SUBTASK + documents · DOCUMENT)  +  calls · latency  +  tokens · per_token

``factor`` is the probe's Python work now over ``REFERENCE_UNIT`` (the fixed costs were measured in
reference seconds and stretch with the machine's load); ``calls`` are the forward passes (batches of
the documents' requests, times 1 + the generated tokens of a generative task), ``tokens`` the requests'
characters / ``CHARS_PER_TOKEN`` (wsm_exp.evaluation.documents.Shape), ``latency`` and ``per_token`` the
planned model's probed forward pass. Training without records of its size: the probed step, plus
``STEP`` per step, ``SAVE`` per checkpoint saved (plus its bytes at ``DISK_BYTES_PER_SECOND``),
``SEGMENT`` per segment trained and ``TRAIN_START`` once.
Every command costs ``COMMAND``, one that evaluates ``FIRST_MODEL`` once, one that trains
``STUDY_SETUP`` once, every evaluated model ``LOAD`` (plus, for a merge, its inputs' bytes read);
these are always priors, in reference seconds times ``factor``.

Example:
    >>> from wsm_exp.timings import TRAIN_TASK, Timing
    >>> past = [Timing("wsm_piqa", 200, 4.0, 1_000_000, "cpu")]
    >>> task_seconds("wsm_piqa", 400, 1_000_000, "cpu", past)
    (7.65, 'measured')
    >>> task_seconds("wsm_piqa", 400, 1_000_000, "cuda", past)[1], task_seconds("wsm_piqa", 400, 9**9, "cpu", past)[1]
    ('prior', 'prior')
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from wsm_exp.evaluation.documents import Shape
from wsm_exp.sweep.check.speed import ModelProbe
from wsm_exp.timings import TRAIN_TASK, Timing

PARAMETER_EXPONENT = 0.63  # records of another size: seconds ∝ parameters^0.63 (tiny vs small study, 2 cores)
PARAMETER_SPAN = 4.0  # records of a model within this factor of the planned size calibrate it; else the prior
RECENT = 20  # records per task and size the median is taken over: the machine's present speed
# The priors, in reference seconds: measured on the 2-core reference machine, where speed.python_work takes
# REFERENCE_UNIT s (docs/measurements.md, 2026-12-06: the micro study's runs, divided by factor at the time).
REFERENCE_UNIT = 0.025
TASK_SECONDS = 0.35  # per task and model: lm-eval building the task and its requests, scoring them
SUBTASK_SECONDS = 0.05  # per further subtask of a group (MMLU's 57 subjects)
DOCUMENT_SECONDS = 0.002  # per document: lm-eval's Python around it (templates, requests, metrics)
LOAD_SECONDS = 0.1  # per evaluated model: lm-eval wrapping it (its weights are read at DISK_BYTES_PER_SECOND)
FIRST_MODEL_SECONDS = 1.0  # once per command that evaluates: lm-eval indexing its tasks, first-use costs
COMMAND_SECONDS = 10.0  # once per command: imports (lm-eval's too), Hydra, the pre-flight, the report and figures
STUDY_SETUP_SECONDS = 3.0  # once per command that trains: the study's corpora, tokenizer and model built
STEP_SECONDS = 0.01  # per training step besides the step itself: the batch, the progress line, logging
SAVE_SECONDS = 0.09  # per checkpoint saved (weights, optimizer state, tokenizer), besides its bytes
SEGMENT_SECONDS = 0.5  # per trained segment (stage 1, each branch): its model built, the parent's state loaded
TRAIN_START_SECONDS = 1.5  # once per command that trains: the first segment's first-use costs (torch, data)
DISK_BYTES_PER_SECOND = 300e6  # reading or writing checkpoints (a local disk; not measured per machine)
CHARS_PER_TOKEN = 4.0  # an English BPE of ~50k entries (a tiny study's vocabulary makes more tokens; cheap ones)


@dataclass(frozen=True)
class Machine:
    """This machine now: ``factor`` = the probe's Python work / ``REFERENCE_UNIT``; ``probe``: the planned
    model's measured forward pass and training step (None: not probed, its compute left out)."""

    factor: float = 1.0
    probe: ModelProbe | None = None


def usable(records: Sequence[Timing], task: str, device: str, parameters: int) -> list[Timing]:
    """The records of ``task`` on ``device`` within ``PARAMETER_SPAN``× of ``parameters``, nearest size first.

    >>> [t.parameters for t in usable([Timing("t", 1, 1.0, 10, "cpu"), Timing("t", 1, 1.0, 1000, "cpu")], "t", "cpu", 30)]
    [10]
    """
    same = [t for t in records if t.task == task and t.device == device
            and abs(math.log(t.parameters / parameters)) <= math.log(PARAMETER_SPAN)]
    if not same:
        return []
    distance = {t: abs(math.log(t.parameters / parameters)) for t in same}
    nearest = min(distance.values())
    return [t for t in same if distance[t] <= nearest + 1e-9][-RECENT:]


def task_seconds(task: str, documents: int, parameters: int, device: str, past: Sequence[Timing],
                 subtasks: int = 1, shape: Shape | None = None, batch: int = 16,
                 machine: Machine = Machine()) -> tuple[float, str]:
    """Seconds to evaluate ``documents`` of ``task`` on a model of ``parameters`` on ``device``, and whether
    they were ``measured`` (records of the task, device and size) or the ``prior`` (see the module)."""
    fixed = machine.factor * (TASK_SECONDS + (subtasks - 1) * SUBTASK_SECONDS)
    chosen = usable(past, task, device, parameters)
    if chosen:
        fixed = min(fixed, 0.9 * min(t.seconds for t in chosen))
        rate = statistics.median(_scaled((t.seconds - fixed) / t.documents, t.parameters, parameters) for t in chosen)
        return round(fixed + documents * rate, 3), "measured"
    shape = shape or Shape(1.0, 4 * CHARS_PER_TOKEN * 100)
    seconds = fixed + documents * machine.factor * DOCUMENT_SECONDS
    if machine.probe is not None:
        requests = documents * shape.requests
        calls = max(subtasks, math.ceil(requests / batch)) * (1 + shape.generated_tokens)
        seconds += machine.probe.forward_seconds(calls, requests * shape.characters / CHARS_PER_TOKEN)
    return round(seconds, 3), "prior"


def _scaled(rate: float, measured_at: int, parameters: int) -> float:
    return rate * (parameters / measured_at) ** PARAMETER_EXPONENT


def model_seconds(*, parameters: int, merged: int, machine: Machine) -> float:
    """Seconds to load one evaluated model (reading its weights; a merge reads its ``merged`` inputs).

    >>> model_seconds(parameters=75_000_000, merged=4, machine=Machine())
    4.1
    """
    read = max(merged, 1) * parameters * 4 / DISK_BYTES_PER_SECOND
    return round(machine.factor * LOAD_SECONDS + read, 3)


def study_seconds(*, steps: int, saves: int, segments: int, tokens_per_step: int, parameters: int, device: str,
                  past: Sequence[Timing], machine: Machine = Machine()) -> tuple[float, str]:
    """Seconds to train ``steps`` steps in ``segments`` segments saving ``saves`` checkpoints: the study's
    recorded seconds per token (training records of a size within ``PARAMETER_SPAN``× on ``device``),
    else the probed step plus the fixed priors (see the module).

    >>> study_seconds(steps=100, saves=4, segments=1, tokens_per_step=256, parameters=1000, device="cpu",
    ...               past=[Timing(TRAIN_TASK, 50, 10.0, 1000, "cpu", tokens=50 * 256)])
    (20.0, 'measured')
    >>> study_seconds(steps=100, saves=4, segments=1, tokens_per_step=256, parameters=1000, device="cpu", past=[],
    ...               machine=Machine(factor=2.0, probe=ModelProbe(0.0, 0.0, train_step=0.1, spent=1.0)))
    (16.7, 'prior')
    """
    chosen = usable([t for t in past if t.tokens > 0], TRAIN_TASK, device, parameters)
    if chosen:
        per_token = statistics.median(_scaled(t.seconds / t.tokens, t.parameters, parameters) for t in chosen)
        return round(steps * tokens_per_step * per_token, 1), "measured"
    step = machine.probe.train_step if machine.probe is not None else 0.0
    save = machine.factor * SAVE_SECONDS + parameters * 12 / DISK_BYTES_PER_SECOND  # fp32 weights + 2 moments
    fixed = machine.factor * (segments * SEGMENT_SECONDS + (TRAIN_START_SECONDS if steps else 0.0))
    return round(steps * (step + machine.factor * STEP_SECONDS) + saves * save + fixed, 1), "prior"


def fixed_seconds(*, evaluates: bool, trains: bool, machine: Machine = Machine()) -> tuple[float, float]:
    """(the command's start and report, its evaluation's one-off start): priors times ``factor``.

    >>> fixed_seconds(evaluates=True, trains=True, machine=Machine(factor=2.0))
    (26.0, 2.0)
    """
    start = COMMAND_SECONDS + (STUDY_SETUP_SECONDS if trains else 0.0)
    return round(machine.factor * start, 3), round(machine.factor * FIRST_MODEL_SECONDS if evaluates else 0.0, 3)
