"""Merge into memory instead of files: the streaming merger's shards land in RAM, hashed exactly as written.

``merge_in_memory(plan)`` runs the merger with a ``MemorySink`` in place of its file writers: each
output shard is the very byte image ``SafetensorsWriter`` would write (header, then every tensor's
bytes, hashed on the way), kept in one preallocated buffer. So ``MemoryMerge.identity`` is the
identity a written merge of the same plan and shard size gets (``identity.folder_identity`` of its
folder), and a score cache keyed by it cannot tell the two apart. Only the small side files
(config.json, tokenizer, merge.json) go to a private temporary folder, deleted by ``close()``.
Numpy only: ``MemoryMerge.arrays()`` are views of the buffers (bf16 as uint16 bits), nothing is copied.

Example:
    >>> from wsm_exp.merging.series import load_series, select_window                   # doctest: +SKIP
    >>> plan = build_plan(select_window(load_series("ckpts/run"), quantity=4), curve="sma")  # doctest: +SKIP
    >>> with merge_in_memory(plan) as merged:                                               # doctest: +SKIP
    ...     merged.identity, sorted(merged.arrays())[:1]
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsm_exp.merging.merger import DEFAULT_SHARD_BYTES, MergeResult, merge_plans
from wsm_exp.merging.plan import MergePlan
from wsm_exp.merging.st_io import tensor_nbytes
from wsm_exp.merging.writer import SafetensorsWriter


class MemoryFile:
    """A write-only file whose bytes stay in memory: the header first (its length learned from that
    first write), then ``data_bytes`` of tensor data, in one buffer allocated once.

    >>> f = MemoryFile(3); f.write(b"hd"); f.write(np.arange(3, dtype=np.uint8)); f.close()
    >>> f.buffer.tolist(), f.header_bytes
    ([104, 100, 0, 1, 2], 2)
    """

    def __init__(self, data_bytes: int):
        self.data_bytes, self.buffer, self.header_bytes, self.filled = data_bytes, None, 0, 0

    def write(self, data) -> None:
        data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data.reshape(-1)
        if self.buffer is None:
            self.header_bytes = data.size
            self.buffer = np.empty(data.size + self.data_bytes, np.uint8)
        if self.filled + data.size > self.buffer.size:
            raise ValueError(f"MemoryFile: {self.filled + data.size} bytes written into {self.buffer.size}")
        self.buffer[self.filled:self.filled + data.size] = data
        self.filled += data.size

    def close(self) -> None:
        """Nothing to release (the writer checks that every tensor arrived; the buffer stays readable)."""


@dataclass
class MemorySink:
    """Stands in for an output's files in ``merger.merge_plans(sinks=...)``: ``open`` is called where a
    shard file would be opened and returns a ``SafetensorsWriter`` over a ``MemoryFile``."""

    shards: dict[str, tuple[MemoryFile, list[tuple[str, str, tuple[int, ...]]]]] = field(default_factory=dict)

    def open(self, path: Path, entries: Sequence[tuple[str, str, Sequence[int]]], metadata: dict[str, str]):
        entries = [(name, st_dtype, tuple(shape)) for name, st_dtype, shape in entries]
        memory = MemoryFile(sum(tensor_nbytes(st_dtype, shape) for _, st_dtype, shape in entries))
        self.shards[Path(path).name] = (memory, entries)
        return SafetensorsWriter(path, entries, metadata, file=memory)

    def arrays(self) -> dict[str, tuple[str, tuple[int, ...], np.ndarray]]:
        """tensor name -> (safetensors dtype, shape, its bytes as a flat uint8 view of the shard buffer)."""
        out = {}
        for memory, entries in self.shards.values():
            offset = memory.header_bytes
            for name, st_dtype, shape in entries:
                size = tensor_nbytes(st_dtype, shape)
                out[name] = (st_dtype, shape, memory.buffer[offset:offset + size])
                offset += size
        return out


@dataclass
class MemoryMerge:
    """A merged model held in memory: its weights (``arrays()``), its side files' folder, its identity."""

    folder: Path  # config.json, tokenizer files and merge.json of the merge (no weights); removed by close()
    identity: str  # = identity.folder_identity of the same merge written with the same shard size
    key: str
    sink: MemorySink
    result: MergeResult

    def arrays(self) -> dict[str, tuple[str, tuple[int, ...], np.ndarray]]:
        return self.sink.arrays()

    def nbytes(self) -> int:
        """Bytes of weights held (header bytes excluded)."""
        return sum(array.size for _, _, array in self.arrays().values())

    def close(self) -> None:
        """Drop the buffers and delete the side-file folder."""
        self.sink.shards.clear()
        shutil.rmtree(self.folder.parent, ignore_errors=True)

    def __enter__(self) -> MemoryMerge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge_in_memory(plan: MergePlan, *, shard_size_bytes: int = DEFAULT_SHARD_BYTES, **options) -> MemoryMerge:
    """Merge ``plan`` into memory (see the module docstring); ``options`` as for ``merger.merge_plans``
    (``hf_config`` for DCP inputs; ``workers`` is ignored: the buffers live in this process).

    Use the sweep's shard size: the identity depends on how the weights are cut into shards.
    """
    scratch = Path(tempfile.mkdtemp(prefix="wsm-memory-merge-"))
    sink = MemorySink()
    try:
        (result,) = merge_plans([plan], [scratch / "merge"], sinks=[sink], shard_size_bytes=shard_size_bytes,
                                **{**options, "workers": 1})
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return MemoryMerge(result.out_dir, result.identity, result.key, sink, result)


__all__ = ["MemoryFile", "MemoryMerge", "MemorySink", "merge_in_memory"]
