"""Reads the merge's inputs piece by piece with positional reads, hashing the bytes on the way.

Safetensors files are read with ``os.preadv`` into one reused buffer at the offsets of their
checked headers: no memory map, so a file that gets shorter while it is read (another process
rewriting it) is a ``CheckpointError`` naming it, never a SIGBUS. A DCP checkpoint is read a whole
tensor at a time (its chunks are ``torch.save`` blobs; ``dcp_io`` imports torch, so only then).
Files whose identity is not cached are hashed tensor by tensor as they stream (``identity``).

Example:
    >>> import tempfile, torch, pathlib
    >>> from safetensors.torch import save_file
    >>> from wsm_exp.merging.ckpt_files import Checkpoint
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> save_file({"w": torch.arange(4.0)}, path)
    >>> class NoHashing:
    ...     def wants(self, file_index): return False
    >>> with TensorReader([Checkpoint(1, path, (path,))], [NoHashing()], {"w": ("F32", (4,))}) as reader:
    ...     reader.read(0, "w", 1, 3).tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsm_exp.merging.arith import NUMPY_DTYPES
from wsm_exp.merging.ckpt_files import DCP_METADATA, Checkpoint
from wsm_exp.merging.hashing import tensor_hasher
from wsm_exp.merging.st_io import CheckpointError, read_header, tensor_nbytes

PIECE_ELEMENTS = 1 << 17  # 512 KiB of fp32: a piece's accumulator and products stay in the L2 cache


class TensorReader:
    """Pieces of every input's tensors; ``streams[i]`` (``identity.StreamingIdentity`` or a stand-in with
    ``wants(file_index)`` and ``add_digest(file_index, name, digest)``) gets input ``i``'s tensor digests.
    ``bar`` (a tqdm bar or None) counts the bytes read. Close it (or use ``with``) to close the files."""

    def __init__(self, checkpoints, streams, layout, bar=None):
        self.checkpoints, self.streams, self.layout, self.bar, self.bytes_read = checkpoints, streams, layout, bar, 0
        self.fds: list[int] = []
        try:
            self.places = [_open(c, layout, self.fds) for c in checkpoints]
        except BaseException:
            self.close()
            raise
        self.hashes = {}
        self.buffer = np.empty(0, np.uint8)

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.pop())

    def pieces(self, name: str) -> list[tuple[int, int]]:
        """Element ranges of tensor ``name`` that are read together: ``PIECE_ELEMENTS`` each, or the whole
        tensor when an input is DCP."""
        numel = numel_of(self.layout[name][1])
        step = max(numel, 1) if any(isinstance(p, _DcpPlace) for p in self.places) else PIECE_ELEMENTS
        return [(a, min(a + step, numel)) for a in range(0, numel, step)] or [(0, 0)]

    def read(self, index: int, name: str, start: int, stop: int, *, record: bool = True) -> np.ndarray:
        """Elements ``start:stop`` of tensor ``name`` of input ``index``, flat, as stored (bf16 as uint16 bits,
        non-float dtypes as bytes); valid until the next ``read``. ``record``: hash and count the bytes."""
        st_dtype = self.layout[name][0]
        dtype = NUMPY_DTYPES.get(st_dtype, np.dtype(np.uint8))
        width = tensor_nbytes(st_dtype, (1,))
        place = self.places[index]
        if isinstance(place, _DcpPlace):
            data = place.handle.get_array(name)
        else:
            fd, file_index, offset = place[name]
            data = self._pread(fd, (stop - start) * width, offset + start * width, index, file_index, name)
            stream = self.streams[index]
            if record and stream.wants(file_index):
                key = (index, name)
                hasher = self.hashes.pop(key) if start else tensor_hasher()
                hasher.update(data)
                if stop == numel_of(self.layout[name][1]):
                    stream.add_digest(file_index, name, hasher.digest())
                else:
                    self.hashes[key] = hasher
        if record:
            self.bytes_read += data.nbytes
            if self.bar is not None:
                self.bar.update(data.nbytes)
        return data.view(dtype)

    def _pread(self, fd: int, size: int, offset: int, index: int, file_index: int, name: str) -> np.ndarray:
        if self.buffer.size < size:
            self.buffer = np.empty(size, np.uint8)
        data, done = self.buffer[:size], 0
        while done < size:
            got = os.preadv(fd, [data[done:]], offset + done)
            if not got:
                file = self.checkpoints[index].files[file_index]
                raise CheckpointError(
                    f"{file} got shorter while the merge read it (tensor {name!r} needs bytes up to "
                    f"{offset + size}, the file now has {os.fstat(fd).st_size}): another process is rewriting or "
                    "deleting it. Nothing was published; wait until it is completely written, then rerun.")
            done += got
        return data


@dataclass(frozen=True)
class _DcpPlace:
    handle: Any  # dcp_io.DcpCheckpoint


def _open(checkpoint: Checkpoint, layout, fds: list[int]) -> dict[str, tuple[int, int, int]] | _DcpPlace:
    """tensor name -> (its file opened read-only, index of the file, offset of its data), over the
    checkpoint's files (each descriptor appended to ``fds``); a DCP checkpoint is one handle (its files
    are hashed by a plain read)."""
    if checkpoint.files[0].name == DCP_METADATA:
        from wsm_exp.merging.dcp_io import DcpCheckpoint  # imports torch: only for DCP inputs

        return _DcpPlace(DcpCheckpoint.open(checkpoint.path))
    by_name = {}
    for index, file in enumerate(checkpoint.files):
        header = read_header(file)
        fd = os.open(file, os.O_RDONLY)
        fds.append(fd)
        if os.fstat(fd).st_size != header.file_size:
            raise CheckpointError(f"{file} changed size while the merge started. Wait until it is completely "
                                  "written, then rerun.")
        for name, info in header.tensors.items():
            if layout.get(name) != (info.dtype, info.shape):
                raise CheckpointError(f"{file} changed while the merge started (tensor {name!r} is now {info.dtype} "
                                      f"{list(info.shape)}). Wait until it is completely written, then rerun.")
            by_name[name] = (fd, index, header.data_start + info.begin)
    return by_name


def numel_of(shape) -> int:
    """Elements of a tensor of ``shape``.

    >>> numel_of((2, 3)), numel_of(())
    (6, 1)
    """
    count = 1
    for dim in shape:
        count *= dim
    return count
