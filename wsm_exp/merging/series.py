"""Checkpoint series: discover step-named checkpoints, select a merge window, check it is mergeable.

A series is a folder whose children carry a step in their name (``step_<n>``, ``step<n>``,
``checkpoint-<n>``, ``iter_<n>``, ``global_step<n>``); each child is a Hugging Face folder
(``model.safetensors`` or shards + ``model.safetensors.index.json``) or a single ``.safetensors``
file. An optional ``series.json`` at the root gives ``tokens_per_step``, the ``lr`` per step,
``branch`` and ``parent``. Only safetensors headers are read here, never the tensors.

Example:
    >>> s = planned_series([10, 20, 30, 40], tokens_per_step=1000)
    >>> w = select_window(s, quantity=2, interval=20)
    >>> [c.step for c in w.checkpoints], w.duration, w.span
    ([20, 40], 40, 20)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsm_exp.merging.ckpt_files import DCP_METADATA, INDEX_FILE, SINGLE_FILE, Checkpoint, SeriesError, weight_files
from wsm_exp.merging.st_io import tensor_layout
from wsm_exp.merging.window import WindowError, spacing, window_steps

STEP_NAME = re.compile(r"^(?:step_?|checkpoint-|iter_|global_step)(\d+)(?:\.safetensors)?$")


@dataclass
class Series:
    """Checkpoints sorted by step, plus what ``series.json`` says about the run."""

    root: Path | None
    checkpoints: list[Checkpoint]
    tokens_per_step: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    @property
    def spacing(self) -> int:
        """Greatest common spacing of the saved steps (the finest usable interval)."""
        return spacing(self.steps)


@dataclass(frozen=True)
class Window:
    """The checkpoints a merge uses, oldest to newest, and the (N, Δ, D) that picked them."""

    checkpoints: tuple[Checkpoint, ...]
    quantity: int  # N
    interval: int  # Δ in steps
    duration: int  # D = N·Δ (the paper's labelling)
    tokens_per_step: int | None = None

    @property
    def end_step(self) -> int:
        return self.checkpoints[-1].step

    @property
    def span(self) -> int:
        """Steps between the oldest and newest merged checkpoint: (N − 1)·Δ."""
        return (self.quantity - 1) * self.interval

    def tokens(self, steps: int) -> int | None:
        return None if self.tokens_per_step is None else steps * self.tokens_per_step


def load_series(source: str | Path | Sequence[str | Path], *, tokens_per_step: int | None = None) -> Series:
    """Discover a series from a folder, or build one from an explicit list of checkpoint paths.

    ``tokens_per_step`` wins over ``series.json``.

    >>> load_series("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.merging.ckpt_files.SeriesError: Checkpoint series folder /nonexistent does not exist...
    """
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise SeriesError(f"Checkpoint series folder {root} {what}. Pass the folder that holds the "
                              f"step_<n> / checkpoint-<n> checkpoints of one run{_nudge(root)}.")
        meta = _read_meta(root)
        candidates = [p for p in root.iterdir() if STEP_NAME.match(p.name)]
    else:
        root, meta, candidates = None, {}, [Path(p) for p in source]
    checkpoints = sorted((_checkpoint(p) for p in candidates), key=lambda c: c.step)
    if not checkpoints:
        raise SeriesError(
            f"No checkpoints found in {root}: children must be named step_<n>, step<n>, checkpoint-<n>, "
            "iter_<n> or global_step<n> and hold model.safetensors (or shards with "
            f"{INDEX_FILE}), or be <name>.safetensors files{_nudge(root)}."
        )
    for a, b in zip(checkpoints, checkpoints[1:]):
        if a.step == b.step:
            raise SeriesError(f"Two checkpoints claim step {a.step}: {a.path} and {b.path}. Keep one of them.")
    tps = tokens_per_step if tokens_per_step is not None else meta.get("tokens_per_step")
    return Series(root=root, checkpoints=checkpoints, tokens_per_step=tps, meta=meta)


def planned_series(steps: Sequence[int], tokens_per_step: int | None = None) -> Series:
    """A series of steps that do not exist yet (to check a sweep before training)."""
    return Series(root=None, tokens_per_step=tokens_per_step,
                  checkpoints=[Checkpoint(int(s), Path(f"<planned step {s}>"), ()) for s in sorted(steps)])


def select_window(series: Series, *, end: int | None = None, quantity: int | None = None,
                  interval: int | None = None, duration: int | None = None) -> Window:
    """Pick N checkpoints Δ steps apart ending at step ``end`` (default: the newest).

    Give ``quantity`` and/or ``interval``, or ``duration`` (D = N·Δ) with one of them.
    The error says which steps exist and what would work.
    """
    try:
        steps, n, delta = window_steps(series.steps, end=end, quantity=quantity, interval=interval, duration=duration)
    except WindowError as err:
        raise SeriesError(str(err)) from None
    by_step = {c.step: c for c in series.checkpoints}
    return Window(tuple(by_step[s] for s in steps), quantity=n, interval=delta, duration=n * delta,
                  tokens_per_step=series.tokens_per_step)


def validate_checkpoints(checkpoints: Sequence[Checkpoint]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Same tensor names, shapes and dtypes everywhere; the error names the first mismatch."""
    reference = checkpoint_layout(checkpoints[0].files)
    for other in checkpoints[1:]:
        layout = checkpoint_layout(other.files)
        extra, absent = sorted(set(layout) - set(reference)), sorted(set(reference) - set(layout))
        if extra or absent:
            name = (absent or extra)[0]
            where = f"missing from {other.path}" if absent else f"only in {other.path}"
            raise SeriesError(
                f"Tensor {name!r} is {where} (compared with {checkpoints[0].path}). Checkpoints of one "
                "merge must come from the same architecture; remove the odd one from the window."
            )
        for name, (dtype, shape) in reference.items():
            if layout[name] != (dtype, shape):
                raise SeriesError(
                    f"Tensor {name!r} differs: {checkpoints[0].path} has {dtype} {list(shape)}, "
                    f"{other.path} has {layout[name][0]} {list(layout[name][1])}. Merge only "
                    "checkpoints of the same model and dtype (convert them first, or pick another window)."
                )
    return reference


def validate_window(window: Window) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Check a window before any work (see ``validate_checkpoints``)."""
    return validate_checkpoints(window.checkpoints)


def _checkpoint(path: Path) -> Checkpoint:
    match = STEP_NAME.match(path.name)
    if not match:
        raise SeriesError(f"Cannot read a step from {path.name!r}: name checkpoints step_<n>, step<n>, "
                          "checkpoint-<n>, iter_<n> or global_step<n>.")
    step = int(match.group(1))
    return Checkpoint(step, path, weight_files(path))


def checkpoint_layout(files: Sequence[Path]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """tensor name -> (safetensors dtype name, shape) of a checkpoint's weight files (safetensors or DCP)."""
    if files and files[0].name == DCP_METADATA:
        from wsm_exp.merging.dcp_io import DcpCheckpoint

        return DcpCheckpoint.open(files[0].parent).layout()
    return tensor_layout(files)


def _nudge(root: Path) -> str:
    """Where the series probably is: the folder above one checkpoint, or the folders below a run's parent."""
    looks_like_checkpoint = STEP_NAME.match(root.name) or (root.is_dir() and (
        (root / SINGLE_FILE).is_file() or (root / INDEX_FILE).is_file()))
    if looks_like_checkpoint:
        return f". {root} looks like one checkpoint: pass the folder above it, {root.parent}, which holds the series"
    if not root.is_dir():
        return ""
    below = sorted(p for p in root.iterdir() if p.is_dir() and any(STEP_NAME.match(c.name) for c in p.iterdir()))
    if below:
        names = ", ".join(str(p) for p in below[:3]) + (" …" if len(below) > 3 else "")
        return f". Step-named checkpoints are one level below, in {names}: pass one of those folders"
    return ""


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / "series.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SeriesError(f"{path} is not valid JSON ({err}). Fix or delete it (it is optional).") from None
