"""Stream a safetensors file tensor by tensor: the header is known up front, the data follows.

A merge knows every output name, dtype and shape before it computes anything, so it can write the
header first and then each tensor's bytes as soon as they exist (hashing them on the way). Nothing
but the tensor in hand is held in memory, and no serialisation copy is made.

Example:
    >>> import tempfile, torch
    >>> from safetensors.torch import load_file
    >>> path = tempfile.mkdtemp() + "/m.safetensors"
    >>> with SafetensorsWriter(path, [("w", "F32", (2,))], {"format": "pt"}) as out:
    ...     out.write("w", torch.tensor([1.0, 2.0]))
    >>> load_file(path)["w"].tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

import torch

from wsm_exp.merging.identity import TreeDigest
from wsm_exp.merging.st_io import tensor_nbytes

TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
               torch.bool: "BOOL"}


class SafetensorsWriter:
    """Writes ``entries`` (name, safetensors dtype, shape), in that order, to ``path``; ``digest()`` is the
    file's identity digest (``identity.file_digest``), computed from the bytes as they are written."""

    def __init__(self, path: str | Path, entries: Sequence[tuple[str, str, Sequence[int]]], metadata: dict[str, str]):
        header: dict = {"__metadata__": metadata}
        offset = 0
        for name, st_dtype, shape in entries:
            end = offset + tensor_nbytes(st_dtype, shape)
            header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, end]}
            offset = end
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
        self._expected = [(name, st_dtype, tuple(shape)) for name, st_dtype, shape in entries]
        self._next = 0
        self._tree = TreeDigest(blob, [name for name, _, _ in entries])
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._file.write(struct.pack("<Q", len(blob)) + blob)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next tensor's bytes; it must be the next entry, with its dtype and shape."""
        expected = self._expected[self._next] if self._next < len(self._expected) else None
        got = (name, TORCH_TO_ST.get(tensor.dtype), tuple(tensor.shape))
        if got != expected:
            raise ValueError(f"SafetensorsWriter expected {expected}, got {got}")
        data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        self._file.write(data)
        self._tree.add(name, data)
        self._next += 1

    def digest(self) -> str:
        return self._tree.hexdigest()

    def close(self) -> None:
        self._file.close()
        if self._next != len(self._expected):
            raise ValueError(f"SafetensorsWriter closed after {self._next} of {len(self._expected)} tensors")

    def __enter__(self) -> SafetensorsWriter:
        return self

    def abort(self) -> None:
        """Close the file without the completeness check (the caller deletes it)."""
        self._file.close()

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()
