"""The calibration store: measured seconds of every task evaluation and every trained study segment.

Each evaluation of one task on one model appends one JSON line to ``<paths.scores>/timings.jsonl``:
task, documents, seconds, the model's parameter count and the device; each segment of the embedded
study trained appends one to ``<paths.studies>/timings.jsonl`` (task ``TRAIN_TASK``, documents =
steps, with its tokens). One ``os.write`` of one
line on a file opened with ``O_APPEND`` is atomic against other appenders (two sweeps at once), and
a reader skips any line it cannot parse, so the store never blocks or breaks a run. ``plan=true``
(wsm_exp/sweep/check/preview.py) turns these records into seconds per document.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> record_timing(root, Timing(task="wsm_piqa", documents=200, seconds=2.0, parameters=1_000_000, device="cpu"))
    >>> [t.seconds_per_document for t in read(root)]
    [0.01]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = "timings.jsonl"
TRAIN_TASK = "(train)"  # the task name of a training record


@dataclass(frozen=True)
class Timing:
    """One task evaluated on one model: how many documents, how long, how big a model, where."""

    task: str
    documents: int
    seconds: float
    parameters: int
    device: str  # the suite's eval.device (cpu, cuda, cuda:1, ...) or the training device
    tokens: int = 0  # tokens processed, where known (training: steps × tokens per step)

    @property
    def seconds_per_document(self) -> float:
        return self.seconds / max(self.documents, 1)


def record_timing(scores_dir: str | Path | None, timing: Timing) -> None:
    """Append one timing to the store (no store without a score cache; a failed write is ignored)."""
    if scores_dir is None:
        return
    path = Path(scores_dir) / FILE
    line = (json.dumps(asdict(timing), sort_keys=True) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(handle, line)  # one write of one short line: atomic among appenders
        finally:
            os.close(handle)
    except OSError:
        pass  # a read-only cache costs only a less calibrated plan


def read(scores_dir: str | Path) -> list[Timing]:
    """Every well-formed timing in the store (none when it is absent)."""
    path = Path(scores_dir) / FILE
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [t for t in map(_parse, lines) if t is not None]


def _parse(line: str) -> Timing | None:
    """A timing from one line, or None for a torn, foreign or nonsensical one.

    >>> _parse('{"task": "t", "documents": 5, "seconds": 1.0, "parameters": 9, "device": "cpu"}').documents
    5
    >>> _parse('{"task": "t", "documents": "5"'), _parse('[1]'), _parse('{"task": 1}')
    (None, None, None)
    """
    try:
        timing = Timing(**json.loads(line))
    except (ValueError, TypeError):
        return None
    types = ((timing.task, str), (timing.device, str), (timing.documents, int), (timing.parameters, int),
             (timing.seconds, (int, float)), (timing.tokens, int))
    if not all(isinstance(v, t) and not isinstance(v, bool) for v, t in types):
        return None
    return timing if timing.documents > 0 and timing.parameters > 0 and timing.seconds >= 0 else None
