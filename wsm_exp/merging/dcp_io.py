"""Checked, tensor-by-tensor reading of torch.distributed.checkpoint (DCP) folders, without a process group.

A DCP folder holds ``.metadata`` (a pickle of ``torch.distributed.checkpoint.metadata.Metadata``)
and ``__<rank>_<k>.distcp`` files. The metadata lists, for every tensor, its dtype, its global shape
and its chunks (one per rank's shard); each chunk is a byte range of one ``.distcp`` file holding
a ``torch.save``'d tensor. ``DcpCheckpoint.get_tensor`` reads exactly the chunks of one tensor
and assembles them, so memory stays near one tensor, as with safetensors.

Trust boundary: torch unpickles ``.metadata`` with plain ``pickle.load``, which runs any code the
file names. Here it is unpickled by a restricted unpickler that resolves only the metadata
classes, ``torch.Size``, torch dtypes and the few helpers torch itself writes; anything else is
refused with ``CheckpointError`` before it is called. The unpickled structure is then checked
(types, chunk files inside the folder, byte ranges inside their file, chunks tiling each tensor).
Chunk bytes are loaded with ``torch.load(weights_only=True)``, torch's loader for untrusted
tensors. Bytes entries (non-tensor state such as a dataloader's) are not read.

Example:
    >>> import tempfile                                                    # doctest: +SKIP
    >>> ckpt = DcpCheckpoint.open("run/step_100")                          # doctest: +SKIP
    >>> ckpt.layout()["lm_head.weight"], ckpt.get_tensor("lm_head.weight").shape   # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wsm_exp.merging.arith import NUMPY_DTYPES
from wsm_exp.merging.ckpt_files import DCP_DATA as DATA_FILE
from wsm_exp.merging.ckpt_files import DCP_METADATA as METADATA_FILE
from wsm_exp.merging.hashing import bytes_digest, tensor_hasher
from wsm_exp.merging.st_io import CheckpointError

MAX_METADATA_BYTES = 256 * 1024**2  # far above any real model's metadata; refuses a runaway file first
_DCP = "torch.distributed.checkpoint"
_ALLOWED = {
    (f"{_DCP}.metadata", name) for name in (
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "TensorProperties", "ChunkStorageMetadata",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")
} | {(f"{_DCP}.filesystem", "_StorageInfo"), ("torch", "Size"), ("torch.serialization", "_get_layout"),
     ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"),
     ("pathlib", "PureWindowsPath"), ("collections", "OrderedDict")}
TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
               torch.bool: "BOOL"}
ST_TO_TORCH = {st: dtype for dtype, st in TORCH_TO_ST.items()}


def is_dcp(path: Path) -> bool:
    """Whether ``path`` is a DCP checkpoint folder (it holds ``.metadata``)."""
    return Path(path).is_dir() and (Path(path) / METADATA_FILE).is_file()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path):
        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise CheckpointError(f"{self.path} names {module}.{name}, which is not part of DCP metadata; it was "
                              "refused unread (a DCP .metadata is a pickle, and unpickling runs what it names). "
                              "Rewrite the checkpoint with torch.distributed.checkpoint.save, or check its origin.")


@dataclass(frozen=True)
class _Chunk:
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str
    start: int
    length: int


@dataclass(frozen=True)
class DcpCheckpoint:
    """A checked DCP folder: every tensor's dtype, shape and chunks (byte ranges of its .distcp files)."""

    path: Path
    tensors: dict[str, tuple[torch.dtype, tuple[int, ...], tuple[_Chunk, ...]]]
    files: tuple[Path, ...]  # .metadata first, then the .distcp files in name order

    @classmethod
    def open(cls, path: str | Path) -> DcpCheckpoint:
        """Read and check ``<path>/.metadata``; raise CheckpointError naming the file and the fix."""
        path = Path(path)
        metadata = _load_metadata(path / METADATA_FILE)
        sizes = {p.name: p.stat().st_size for p in path.iterdir() if DATA_FILE.fullmatch(p.name)}
        tensors = {}
        try:
            chunks_of = _storage_index(metadata, path)
            for fqn, entry in metadata.state_dict_metadata.items():
                if type(entry).__name__ == "BytesStorageMetadata":
                    continue
                tensors[fqn] = _checked_tensor(fqn, entry, chunks_of, sizes, path)
        except CheckpointError:
            raise
        except Exception as err:  # noqa: BLE001 — any malformed structure becomes the one clear error
            why = f"its structure is not DCP metadata ({type(err).__name__})"
            raise _malformed(path / METADATA_FILE, why) from None
        used = sorted({c.file for _, _, chunks in tensors.values() for c in chunks})
        return cls(path, tensors, (path / METADATA_FILE, *(path / f for f in used)))

    def layout(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """name -> (safetensors dtype name, shape), as ``st_io`` gives for safetensors files."""
        return {name: (TORCH_TO_ST[dtype], shape) for name, (dtype, shape, _) in self.tensors.items()}

    def keys(self) -> list[str]:
        return list(self.tensors)

    def get_tensor(self, name: str) -> torch.Tensor:
        """The whole tensor ``name``, assembled from its chunks (only those bytes are read)."""
        dtype, shape, chunks = self.tensors[name]
        if len(chunks) == 1 and chunks[0].sizes == shape:
            return self._chunk(name, dtype, chunks[0])
        out = torch.empty(shape, dtype=dtype)
        for chunk in chunks:
            view = out
            for dim, (offset, size) in enumerate(zip(chunk.offsets, chunk.sizes)):
                view = view.narrow(dim, offset, size)
            view.copy_(self._chunk(name, dtype, chunk))
        return out

    def get_array(self, name: str) -> np.ndarray:
        """``get_tensor`` as the merger takes it: flat numpy, float dtypes as ``arith.NUMPY_DTYPES`` (bf16 as
        its uint16 bits), other dtypes as bytes."""
        return to_numpy(self.get_tensor(name))

    def _chunk(self, name: str, dtype: torch.dtype, chunk: _Chunk) -> torch.Tensor:
        file = self.path / chunk.file
        with open(file, "rb") as handle:
            handle.seek(chunk.start)
            data = handle.read(chunk.length)
        try:
            tensor = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 — torch's own message is long; ours names the place
            raise CheckpointError(
                f"Tensor {name!r} of DCP checkpoint {self.path}: bytes {chunk.start}..{chunk.start + chunk.length} "
                f"of {chunk.file} are not a saved tensor ({type(err).__name__}); the file is damaged or was "
                "changed after saving. Copy the checkpoint again from its source.") from None
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != chunk.sizes or tensor.dtype != dtype:
            raise CheckpointError(
                f"Tensor {name!r} of DCP checkpoint {self.path}: the chunk in {chunk.file} holds "
                f"{getattr(tensor, 'dtype', type(tensor).__name__)} {list(getattr(tensor, 'shape', []))}, but "
                f".metadata says {dtype} {list(chunk.sizes)}. The checkpoint is inconsistent; save it again.")
        return tensor.contiguous()


class DcpWriter:
    """Writes tensors one by one as a one-rank DCP checkpoint (``__0_0.distcp`` + ``.metadata``) in ``folder``.

    Each tensor is ``torch.save``'d into the data file, as DCP's own writer does, so
    ``torch.distributed.checkpoint.load`` reads the result (e.g. to resume training from a merge).
    ``digests()`` are the files' identity digests (``hashing.raw_digest``), hashed as written.
    """

    DATA = "__0_0.distcp"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.handle = open(self.folder / self.DATA, "wb")  # noqa: SIM115 (closed in close/abort)
        self.hash, self.offset, self.entries = tensor_hasher(), 0, {}
        self.metadata_digest = ""

    def write(self, name: str, tensor: torch.Tensor) -> None:
        buffer = io.BytesIO()
        torch.save(tensor.detach().clone(), buffer)  # clone: a view would save its whole storage
        data = buffer.getbuffer()
        self.handle.write(data)
        self.hash.update(data)
        self.entries[name] = (tensor.dtype, tuple(tensor.shape), self.offset, len(data))
        self.offset += len(data)

    def write_array(self, name: str, st_dtype: str, shape, data: np.ndarray) -> None:
        """``write`` for the merger's flat numpy data of safetensors dtype ``st_dtype`` (bf16 as uint16 bits)."""
        flat = torch.from_numpy(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        self.write(name, flat.view(ST_TO_TORCH[st_dtype]).reshape(shape))

    def close(self) -> None:
        from torch.distributed.checkpoint.filesystem import _StorageInfo
        from torch.distributed.checkpoint.metadata import (ChunkStorageMetadata, Metadata, MetadataIndex,
                                                           TensorProperties, TensorStorageMetadata)

        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        state, storage = {}, {}
        for name, (dtype, shape, offset, length) in self.entries.items():
            zeros = torch.Size([0] * len(shape))
            state[name] = TensorStorageMetadata(TensorProperties(dtype=dtype), torch.Size(shape),
                                                [ChunkStorageMetadata(zeros, torch.Size(shape))])
            storage[MetadataIndex(name, zeros)] = _StorageInfo(self.DATA, offset, length)
        raw = pickle.dumps(Metadata(state, planner_data={n: (n,) for n in state}, storage_data=storage))
        with open(self.folder / METADATA_FILE, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        self.metadata_digest = bytes_digest(raw)

    def digests(self) -> list[str]:
        """Digests of ``.metadata`` and the data file, in ``ckpt_files.weight_files`` order."""
        return [self.metadata_digest, self.hash.hexdigest()]

    def abort(self) -> None:
        self.handle.close()


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's data as flat numpy: float dtypes as ``arith.NUMPY_DTYPES`` (bf16 as uint16 bits), others as bytes.

    >>> to_numpy(torch.tensor([1.0, -2.0], dtype=torch.bfloat16)).tolist() == [0x3F80, 0xC000]
    True
    """
    flat = tensor.detach().contiguous().reshape(-1)
    st_dtype = TORCH_TO_ST[flat.dtype]
    as_bytes = flat.view(torch.uint8).numpy()
    return as_bytes.view(NUMPY_DTYPES[st_dtype]) if st_dtype in NUMPY_DTYPES else as_bytes


def _load_metadata(file: Path):
    if not file.is_file():
        raise CheckpointError(f"{file.parent} has no {METADATA_FILE}: it is not a complete DCP checkpoint (DCP "
                              "writes .metadata last). Wait for the save to finish, or copy the whole folder.")
    size = file.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise _malformed(file, f"it is {size} bytes, more than DCP metadata of any model")
    data = file.read_bytes()
    try:
        metadata = _RestrictedUnpickler(data, file).load()
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 — truncated or random bytes: one clear error
        raise _malformed(file, f"it does not unpickle ({type(err).__name__})") from None
    if type(metadata).__name__ != "Metadata" or not isinstance(getattr(metadata, "state_dict_metadata", None), dict):
        raise _malformed(file, f"it holds a {type(metadata).__name__}, not DCP Metadata")
    if not isinstance(getattr(metadata, "storage_data", None), dict):
        raise _malformed(file, "it has no storage index (storage_data)")
    return metadata


def _storage_index(metadata, root: Path) -> dict[tuple[str, tuple[int, ...]], tuple[str, int, int]]:
    index = {}
    for key, info in metadata.storage_data.items():
        name = info.relative_path
        if not isinstance(name, str) or not DATA_FILE.fullmatch(name):
            raise _malformed(root / METADATA_FILE, f"it points tensor {key.fqn!r} at {name!r}, not a __<rank>_<k>"
                             ".distcp file inside the folder")
        if info.transform_descriptors:
            raise CheckpointError(f"Tensor {key.fqn!r} of DCP checkpoint {root} is stored with transforms "
                                  f"{list(info.transform_descriptors)} (e.g. compression), which this reader does "
                                  "not undo. Save the checkpoint without them.")
        index[(key.fqn, tuple(int(o) for o in key.offset))] = (name, int(info.offset), int(info.length))
    return index


def _checked_tensor(fqn, entry, chunks_of, sizes, root: Path):
    dtype = entry.properties.dtype
    if dtype not in TORCH_TO_ST:
        raise CheckpointError(f"Tensor {fqn!r} of DCP checkpoint {root} is {dtype}, which cannot be merged or "
                              "written as safetensors. Convert the checkpoint's tensors to a float dtype first.")
    shape = tuple(int(d) for d in entry.size)
    chunks, covered = [], 0
    for chunk in entry.chunks:
        offsets, extent = tuple(int(o) for o in chunk.offsets), tuple(int(s) for s in chunk.sizes)
        if len(offsets) != len(shape) or len(extent) != len(shape) or any(
                o < 0 or s < 0 or o + s > d for o, s, d in zip(offsets, extent, shape)):
            raise _malformed(root / METADATA_FILE, f"a chunk of tensor {fqn!r} ({list(offsets)} + {list(extent)}) "
                             f"lies outside its shape {list(shape)}")
        if (fqn, offsets) not in chunks_of:
            raise _malformed(root / METADATA_FILE, f"the chunk of tensor {fqn!r} at {list(offsets)} has no storage")
        file, start, length = chunks_of[(fqn, offsets)]
        if file not in sizes:
            raise CheckpointError(f"DCP checkpoint {root} stores tensor {fqn!r} in {file}, which is missing. "
                                  "Copy the complete folder (every rank's .distcp files).")
        if start < 0 or length <= 0 or start + length > sizes[file]:
            raise CheckpointError(f"DCP checkpoint {root}: tensor {fqn!r} lies at bytes {start}..{start + length} "
                                  f"of {file}, which has {sizes[file]} bytes (truncated copy?). Copy it again.")
        numel = 1
        for s in extent:
            numel *= s
        covered += numel
        chunks.append(_Chunk(offsets, extent, file, start, length))
    total = 1
    for d in shape:
        total *= d
    if covered != total:  # chunks of one tensor never overlap in DCP: equal counts mean they tile it
        raise _malformed(root / METADATA_FILE, f"the chunks of tensor {fqn!r} cover {covered} of its {total} elements")
    return dtype, shape, tuple(chunks)


def _malformed(file: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{file} is not valid DCP metadata: {why}. The save was interrupted or the file was "
                           "damaged; save the checkpoint again with torch.distributed.checkpoint.save, or copy it "
                           "again from its source.")


__all__ = ["DcpCheckpoint", "DcpWriter", "METADATA_FILE", "is_dcp"]
