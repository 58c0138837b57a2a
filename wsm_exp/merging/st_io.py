"""Checked safetensors header reads: every length and offset is verified before it is trusted.

A checkpoint is outside input. Before a byte of tensor data is read, the 8-byte header length is
checked against the file size, the header must be UTF-8 JSON whose tensors have known dtypes,
non-negative integer shapes and data offsets that tile the data area exactly (no gap, overlap,
duplicate or tensor past the end), and ``__metadata__`` must map strings to strings. Anything
else raises ``CheckpointError`` with one paragraph naming the file and the problem.

Example:
    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> path = tempfile.mkdtemp() + "/m.safetensors"
    >>> save_file({"w": torch.zeros(2, 3)}, path)
    >>> read_header(path).tensors["w"]
    TensorInfo(dtype='F32', shape=(2, 3), begin=0, end=24)
    >>> import os; os.truncate(path, os.path.getsize(path) - 4)
    >>> read_header(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.merging.st_io.CheckpointError: ...m.safetensors is not a valid safetensors file: tensor 'w' claims ...
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024**2  # the safetensors library refuses larger headers too
ITEMSIZE = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
            "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
FIX = "Re-save or re-copy it (a complete file written by safetensors), or remove it from the series."


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's dtype, shape and byte range inside the data area (after the header)."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    """A checked safetensors header: raw bytes, tensors in data order, metadata, file size."""

    path: Path
    raw: bytes
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    file_size: int

    @property
    def data_start(self) -> int:
        return 8 + len(self.raw)


def tensor_nbytes(st_dtype: str, shape: Iterable[int]) -> int:
    """Bytes of a tensor of safetensors dtype ``st_dtype`` and ``shape``.

    >>> tensor_nbytes("BF16", (3, 4))
    24
    """
    count = 1
    for dim in shape:
        count *= dim
    return count * ITEMSIZE[st_dtype]


def read_header(path: str | Path) -> Header:
    """Read and check the header of a safetensors file (no tensor data is read)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            return _parse(path, handle, size)
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({err.strerror or err}). Check that it exists and is "
                              "readable, or remove it from the series.") from None


def tensor_layout(files: Sequence[Path]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """tensor name -> (dtype, shape) over the weight files of one checkpoint; a name in two files is refused."""
    layout: dict[str, tuple[str, tuple[int, ...]]] = {}
    where: dict[str, Path] = {}
    for file in files:
        for name, info in read_header(file).tensors.items():
            if name in layout:
                raise CheckpointError(f"Tensor {name!r} is stored twice, in {where[name]} and {file}. {FIX}")
            layout[name], where[name] = (info.dtype, info.shape), file
    return layout


def _parse(path: Path, handle, size: int) -> Header:
    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid safetensors file: {problem}. {FIX}")

    if size < 8:
        raise bad(f"it is {size} bytes long, shorter than the 8-byte header length every safetensors file "
                  "starts with (an empty or truncated file)")
    (length,) = struct.unpack("<Q", handle.read(8))
    if length > MAX_HEADER_BYTES:
        raise bad(f"its first 8 bytes declare a {length}-byte header, more than the {MAX_HEADER_BYTES}-byte "
                  "limit (a corrupt length, or not a safetensors file)")
    if length < 2 or 8 + length > size:
        raise bad(f"its first 8 bytes declare a {length}-byte header, but the file holds {size - 8} bytes after "
                  "them (a corrupt length or a truncated file)")
    raw = handle.read(length)
    if len(raw) != length:
        raise bad("it got shorter while being read")
    tensors, metadata = _check_entries(raw, size - 8 - length, bad)
    return Header(path, raw, tensors, metadata, size)


def _check_entries(raw: bytes, data_size: int, bad) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    if not raw.startswith(b"{"):
        raise bad("its header does not start with '{' (not a JSON object)")
    try:
        entries = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise bad("its header is not UTF-8 text") from None
    except ValueError as err:
        raise bad(f"its header is not valid JSON ({err})") from None
    if not isinstance(entries, dict):
        raise bad("its header is not a JSON object")
    metadata = entries.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("its __metadata__ is not a map of strings to strings")
    tensors = {name: _check_tensor(name, entry, data_size, bad) for name, entry in entries.items()}
    ordered = sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end))
    position, previous = 0, None
    for name, info in ordered:
        if info.begin < position:
            raise bad(f"tensor {name!r} overlaps tensor {previous!r} (bytes {info.begin}-{position} of the data area)")
        if info.begin > position:
            raise bad(f"{info.begin - position} bytes of the data area before tensor {name!r} belong to no tensor")
        position, previous = info.end, name
    if position != data_size:
        raise bad(f"its tensors cover {position} bytes but the data area holds {data_size} (a truncated file, or "
                  "bytes appended after the last tensor)")
    return dict(ordered), metadata


def _check_tensor(name: str, entry, data_size: int, bad) -> TensorInfo:
    if not isinstance(entry, dict):
        raise bad(f"the entry of tensor {name!r} is not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in ITEMSIZE:
        raise bad(f"tensor {name!r} has dtype {dtype!r}; known dtypes are {', '.join(ITEMSIZE)}")
    if not isinstance(shape, list) or not all(_count(d) for d in shape):
        raise bad(f"tensor {name!r} has shape {shape!r}; a shape is a list of integers ≥ 0")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise bad(f"tensor {name!r} has data_offsets {offsets!r}; they are two integers [begin, end]")
    begin, end = offsets
    if not begin <= end <= data_size:
        raise bad(f"tensor {name!r} claims bytes {begin}-{end} of a {data_size}-byte data area (a truncated "
                  "file or a corrupt header)")
    if end - begin != tensor_nbytes(dtype, shape):
        raise bad(f"tensor {name!r} is {dtype} {shape} ({tensor_nbytes(dtype, shape)} bytes) but its data_offsets "
                  f"span {end - begin} bytes")
    return TensorInfo(dtype, tuple(shape), begin, end)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result
