"""Stream a safetensors file tensor by tensor: the header is known up front, the data follows.

A merge knows every output name, dtype and shape before it computes anything, so it can write the
header first and then each tensor's bytes as soon as they exist, in pieces if it likes (hashing
them on the way). Nothing but the piece in hand is held in memory, and no serialisation copy is
made. Data are numpy arrays (bf16 as its ``uint16`` bits); no torch.

Example:
    >>> import tempfile, numpy as np
    >>> from safetensors.numpy import load_file
    >>> path = tempfile.mkdtemp() + "/m.safetensors"
    >>> with SafetensorsWriter(path, [("w", "F32", (2, 2))], {"format": "pt"}) as out:
    ...     out.write("w", np.array([1.0, 2.0], np.float32)); out.write("w", np.array([3.0, 4.0], np.float32))
    >>> load_file(path)["w"].tolist()
    [[1.0, 2.0], [3.0, 4.0]]
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wsm_exp.merging.arith import NUMPY_DTYPES
from wsm_exp.merging.hashing import TreeDigest, tensor_hasher
from wsm_exp.merging.st_io import tensor_nbytes


class SafetensorsWriter:
    """Writes ``entries`` (name, safetensors dtype, shape), in that order, to ``path``; ``digest()`` is the
    file's identity digest (``identity.file_digest``), computed from the bytes as they are written.
    ``file``: a binary file object to write to instead of opening ``path`` (``memory_sink.MemoryFile``)."""

    def __init__(self, path: str | Path, entries: Sequence[tuple[str, str, Sequence[int]]], metadata: dict[str, str],
                 file=None):
        header: dict = {"__metadata__": metadata}
        offset = 0
        for name, st_dtype, shape in entries:
            end = offset + tensor_nbytes(st_dtype, shape)
            header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, end]}
            offset = end
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
        self._expected = [(name, st_dtype, tensor_nbytes(st_dtype, shape)) for name, st_dtype, shape in entries]
        self._next, self._written, self._hash = 0, 0, tensor_hasher()
        self._tree = TreeDigest(blob, [name for name, _, _ in entries])
        self._owned = file is None
        self._file = open(path, "wb") if file is None else file  # noqa: SIM115 (closed in close())
        self._file.write(struct.pack("<Q", len(blob)) + blob)

    def write(self, name: str, data: np.ndarray) -> None:
        """Append the next bytes of tensor ``name``: all of them, or the next piece (flat, in order).

        ``name`` is the entry being written, or the next one once that is complete; a float
        entry's data have its numpy dtype (``arith.NUMPY_DTYPES``, bf16 as uint16), other entries
        are taken as bytes."""
        expected = self._expected[self._next] if self._next < len(self._expected) else None
        wanted = NUMPY_DTYPES.get(expected[1]) if expected else None
        if (expected is None or name != expected[0] or (wanted is not None and data.dtype != wanted)
                or self._written + data.nbytes > expected[2]):
            raise ValueError(f"SafetensorsWriter expected {expected} ({self._written} bytes written), got "
                             f"{name!r} {data.dtype} of {data.nbytes} bytes")
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        self._file.write(data)
        self._hash.update(data)
        self._written += data.nbytes
        if self._written == expected[2]:
            self._finish_entry()

    def _finish_entry(self) -> None:
        self._tree.add_digest(self._expected[self._next][0], self._hash.digest())
        self._next, self._written, self._hash = self._next + 1, 0, tensor_hasher()

    def digest(self) -> str:
        return self._tree.hexdigest()

    def close(self) -> None:
        """Check that every tensor was written, then flush, fsync (the merge publishes only durable files)
        and close the file."""
        if self._next != len(self._expected):
            self.abort()
            raise ValueError(f"SafetensorsWriter closed after {self._next} of {len(self._expected)} tensors")
        if self._owned:  # a file of ours: durable before the merge publishes it (a given file object: its owner's)
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> SafetensorsWriter:
        return self

    def abort(self) -> None:
        """Close the file without the completeness check (the caller deletes it). Closing flushes what is
        buffered, so on a full disk this raises again; the file is closed all the same."""
        self._file.close()

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()
