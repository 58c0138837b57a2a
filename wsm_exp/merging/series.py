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

import hashlib
import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

STEP_NAME = re.compile(r"^(?:step_?|checkpoint-|iter_|global_step)(\d+)(?:\.safetensors)?$")
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class SeriesError(ValueError):
    """A series, window or checkpoint that cannot be used, with what would work instead."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: its global step, its path (folder or file) and its weight files."""

    step: int
    path: Path
    files: tuple[Path, ...]


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
        gaps = [b - a for a, b in zip(self.steps, self.steps[1:])]
        return reduce(math.gcd, gaps) if gaps else 1


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
    wsm_exp.merging.series.SeriesError: Checkpoint series folder /nonexistent does not exist...
    """
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.is_dir():
            raise SeriesError(f"Checkpoint series folder {root} does not exist. Pass the folder that holds the "
                              "step_<n> / checkpoint-<n> checkpoints of one run.")
        meta = _read_meta(root)
        candidates = [p for p in root.iterdir() if STEP_NAME.match(p.name)]
    else:
        root, meta, candidates = None, {}, [Path(p) for p in source]
    checkpoints = sorted((_checkpoint(p) for p in candidates), key=lambda c: c.step)
    if not checkpoints:
        raise SeriesError(
            f"No checkpoints found in {root}: children must be named step_<n>, step<n>, checkpoint-<n>, "
            "iter_<n> or global_step<n> and hold model.safetensors (or shards with "
            f"{INDEX_FILE}), or be <name>.safetensors files."
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
    steps, spacing = series.steps, series.spacing
    end = steps[-1] if end is None else int(end)
    if end not in steps:
        raise SeriesError(f"No checkpoint at end step {end}. Available steps: {_fmt(steps)}.")
    n, delta = _resolve(quantity, interval, duration, spacing)
    if n > 1 and delta % spacing:
        raise SeriesError(f"Interval Δ={delta} is not a multiple of the saved spacing {spacing}; "
                          f"use one of {[spacing * k for k in range(1, 5)]}…")
    have = set(steps)
    wanted = [end - (n - 1 - i) * delta for i in range(n)]
    missing = [s for s in wanted if s not in have]
    if missing:
        fits = 0
        while end - fits * delta in have:
            fits += 1
        raise SeriesError(
            f"The window N={n}, Δ={delta} ending at step {end} needs steps {_fmt(wanted)}, but "
            f"{_fmt(missing)} are not in the series. Largest N at Δ={delta} ending at {end} is {fits}"
            f" (D={fits * delta}). Available steps: {_fmt(steps)}."
        )
    by_step = {c.step: c for c in series.checkpoints}
    return Window(tuple(by_step[s] for s in wanted), quantity=n, interval=delta, duration=n * delta,
                  tokens_per_step=series.tokens_per_step)


def read_header(path: Path) -> tuple[bytes, dict[str, Any]]:
    """Raw header bytes and parsed header of a safetensors file (no tensor data is read)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            raw = handle.read(length)
        return raw, json.loads(raw)
    except (OSError, struct.error, ValueError) as err:
        raise SeriesError(f"{path} is not a readable safetensors file ({err}). Re-save it with "
                          "safetensors, or remove it from the series.") from None


def tensor_layout(checkpoint: Checkpoint) -> dict[str, tuple[str, tuple[int, ...]]]:
    """tensor name -> (dtype, shape) over all weight files of a checkpoint."""
    layout: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in checkpoint.files:
        _, header = read_header(file)
        for name, info in header.items():
            if name != "__metadata__":
                layout[name] = (info["dtype"], tuple(info["shape"]))
    return layout


def validate_checkpoints(checkpoints: Sequence[Checkpoint]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Same tensor names, shapes and dtypes everywhere; the error names the first mismatch."""
    reference = tensor_layout(checkpoints[0])
    for other in checkpoints[1:]:
        layout = tensor_layout(other)
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


def checkpoint_identity(checkpoint: Checkpoint, *, samples: int = 16, block: int = 1 << 16) -> str:
    """A content identity: header, size and evenly spaced data blocks of every weight file.

    Cheap on multi-GB checkpoints (≤ 1 MiB read per file) yet changes when the weights change.
    """
    digest = hashlib.sha256()
    for file in checkpoint.files:
        raw, _ = read_header(file)
        size = file.stat().st_size
        digest.update(raw + size.to_bytes(8, "little"))
        with open(file, "rb") as handle:
            for k in range(samples):
                handle.seek(int((size - block) * k / max(samples - 1, 1)) if size > block else 0)
                digest.update(handle.read(block))
    return digest.hexdigest()[:24]


def _resolve(quantity: int | None, interval: int | None, duration: int | None, spacing: int) -> tuple[int, int]:
    for name, value in (("quantity", quantity), ("interval", interval), ("duration", duration)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise SeriesError(f"{name}={value!r} must be a positive integer (steps or checkpoints).")
    if duration is None:
        if quantity is None:
            raise SeriesError("Give the merge quantity N, or a duration D with an interval Δ.")
        return quantity, interval or spacing
    if quantity is not None and interval is not None:
        if quantity * interval != duration:
            raise SeriesError(f"D={duration} ≠ N·Δ = {quantity}·{interval}: give two of the three.")
        return quantity, interval
    if quantity is not None:
        if duration % quantity:
            raise SeriesError(f"D={duration} is not a multiple of N={quantity}: Δ = D/N must be a whole number "
                              f"of steps (e.g. D={quantity * spacing * max(1, duration // (quantity * spacing))}).")
        return quantity, duration // quantity
    delta = interval or spacing
    if duration % delta:
        raise SeriesError(f"D={duration} is not a multiple of Δ={delta}: N = D/Δ must be whole "
                          f"(e.g. D={delta * max(1, duration // delta)}).")
    return duration // delta, delta


def _checkpoint(path: Path) -> Checkpoint:
    match = STEP_NAME.match(path.name)
    if not match:
        raise SeriesError(f"Cannot read a step from {path.name!r}: name checkpoints step_<n>, step<n>, "
                          "checkpoint-<n>, iter_<n> or global_step<n>.")
    step = int(match.group(1))
    return Checkpoint(step, path, weight_files(path))


def weight_files(path: Path) -> tuple[Path, ...]:
    """The safetensors files of a checkpoint: the file itself, the index's shards, or model.safetensors."""
    if path.is_file() and path.suffix == ".safetensors":
        return (path,)
    if (path / INDEX_FILE).is_file():
        index = json.loads((path / INDEX_FILE).read_text())
        shards = sorted(set(index.get("weight_map", {}).values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if not shards or missing:
            raise SeriesError(f"{path / INDEX_FILE} lists shard(s) {missing or '(none)'} that are not in {path}. "
                              "Copy the complete checkpoint.")
        return tuple(path / s for s in shards)
    if (path / SINGLE_FILE).is_file():
        return (path / SINGLE_FILE,)
    raise SeriesError(f"Checkpoint {path} has no {SINGLE_FILE} and no {INDEX_FILE}: save it with "
                      "save_pretrained (safetensors), or convert it first.")


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / "series.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SeriesError(f"{path} is not valid JSON ({err}). Fix or delete it (it is optional).") from None


def _fmt(steps: Sequence[int]) -> str:
    steps = list(steps)
    return str(steps) if len(steps) <= 12 else f"[{', '.join(map(str, steps[:5]))}, …, {', '.join(map(str, steps[-5:]))}]"
