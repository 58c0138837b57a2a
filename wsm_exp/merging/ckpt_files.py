"""What a checkpoint is on disk: its weight files (safetensors or DCP), their index, and its side files.

A checkpoint is a Hugging Face folder (``model.safetensors``, or shards listed by
``model.safetensors.index.json``), a single ``.safetensors`` file, or a torch.distributed.checkpoint
folder (``.metadata`` + ``__<rank>_<k>.distcp``). Its side files are what goes beside merged
weights so ``from_pretrained`` works: config, generation config and tokenizer files, never
weights, indexes, training state or a merge record. Only names are read here (and an index's
JSON), never tensors, and nothing imports torch.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "model.safetensors").write_bytes(b"")
    >>> [p.name for p in weight_files(folder)]
    ['model.safetensors']
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from wsm_exp.merging.st_io import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DCP_METADATA = ".metadata"  # a torch.distributed.checkpoint folder (wsm_exp.merging.dcp_io)
DCP_DATA = re.compile(r"__\d+_\d+\.distcp")
SKIPPED_FILES = ("trainer_state", "optimizer", "scheduler", "rng_state", "training_args", "merge.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".distcp")  # never copied


class SeriesError(ValueError):
    """A series, window or checkpoint that cannot be used, with what would work instead."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: its global step, its path (folder or file) and its weight files."""

    step: int
    path: Path
    files: tuple[Path, ...]


def weight_files(path: Path) -> tuple[Path, ...]:
    """The weight files of a checkpoint: the file itself, the index's shards, model.safetensors, or DCP's
    ``.metadata`` followed by its ``.distcp`` files."""
    if path.is_file() and path.suffix == ".safetensors":
        return (path,)
    if (path / INDEX_FILE).is_file():
        shards = _index_shards(path / INDEX_FILE)
        missing = [s for s in shards if not (path / s).is_file()]
        if not shards or missing:
            raise SeriesError(f"{path / INDEX_FILE} lists shard(s) {missing or '(none)'} that are not in {path}. "
                              "Copy the complete checkpoint.")
        return tuple(path / s for s in shards)
    if (path / SINGLE_FILE).is_file():
        return (path / SINGLE_FILE,)
    if (path / DCP_METADATA).is_file():
        return (path / DCP_METADATA, *sorted(p for p in path.iterdir() if DCP_DATA.fullmatch(p.name)))
    raise SeriesError(f"Checkpoint {path} has no {SINGLE_FILE}, no {INDEX_FILE} and no DCP {DCP_METADATA}: save "
                      "it with save_pretrained (safetensors) or torch.distributed.checkpoint, or convert it first.")


def is_side_file(path: Path) -> bool:
    """Whether ``path`` goes beside merged weights: a model folder's config and tokenizer files, not its
    weights (any format), weight index, training state or merge record.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("config.json", "tokenizer.json", "pytorch_model.bin", "optimizer.pt", "model.safetensors.index.json"):
        ...     _ = (folder / name).write_text("{}")
        >>> sorted(p.name for p in folder.iterdir() if is_side_file(p))
        ['config.json', 'tokenizer.json']
    """
    name = path.name
    return (path.is_file() and not name.endswith(WEIGHT_SUFFIXES) and not name.endswith(".index.json")
            and not name.startswith(SKIPPED_FILES))


def _index_shards(index_path: Path) -> list[str]:
    """Shard file names of a sharded checkpoint's index, checked."""
    try:
        weight_map = json.loads(index_path.read_text()).get("weight_map")
    except (OSError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{index_path} is not a readable JSON index ({err}). Re-copy the checkpoint, or "
                              "re-save it with save_pretrained.") from None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) and "/" not in f and f not in ("", ".", "..")
                                                   for f in weight_map.values()):
        raise CheckpointError(f"{index_path} has no weight_map of tensor names to shard file names in its folder. "
                              "Re-copy the checkpoint, or re-save it with save_pretrained.")
    return sorted(set(weight_map.values()))
