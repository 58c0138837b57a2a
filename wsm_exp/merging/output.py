"""Writes a merge's output folder: shards, index, side files and merge.json, fsynced, published by rename.

``FolderOutput`` is the engine's sink for one merge (``engine.stream`` calls ``start``, ``write``
and ``finish`` on its writer thread): tensors go to safetensors shards of at most the shard size
(``writer``), or to a one-rank DCP checkpoint (``dcp_io``), each hashed as written. Everything goes
into a hidden temporary sibling of ``out_dir`` (``atomic.temp_path``); ``close`` adds the index, the
side files (config and tokenizer, so ``from_pretrained`` works) and ``merge.json`` (the plan, the
output's identity and every file written), fsyncs them and the folder; ``publish`` renames it into
place and fsyncs the parent, so a crash or power loss leaves the old folder or the complete new one.
``--overwrite`` replaces only a previous merge output: a folder whose merge.json lists all it holds.

Example:
    >>> plan_shards({"a": ("F32", (256,)), "b": ("F32", (256,))}, None, 1024)
    [('model-00001-of-00002.safetensors', ['a']), ('model-00002-of-00002.safetensors', ['b'])]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from wsm_exp.atomic import temp_path
from wsm_exp.merging.ckpt_files import DCP_METADATA, INDEX_FILE, SINGLE_FILE, Checkpoint, is_side_file
from wsm_exp.merging.engine import MergeError, out_st_dtype
from wsm_exp.merging.identity import combine, config_of
from wsm_exp.merging.plan import MergePlan
from wsm_exp.merging.st_io import CheckpointError, tensor_nbytes
from wsm_exp.merging.writer import SafetensorsWriter


@dataclass(frozen=True)
class MergeResult:
    """Where the merged model is, its plan's key, its own identity, and what it cost."""

    out_dir: Path
    key: str
    identity: str  # content identity of the output (identity.folder_identity of out_dir)
    bytes_read: int
    seconds: float
    shards: int
    reused: bool = False


class FolderOutput:
    """One plan's output folder during a pass: its shard writers and its temporary folder. With ``tmp``, a
    worker writing some shards of a folder its parent made (``start``/``write``/``finish`` only)."""

    def __init__(self, plan: MergePlan, out_dir: Path, layout, shard_size_bytes: int, as_dcp: bool = False,
                 side_files: Path | None = None, tmp: Path | None = None):
        self.plan, self.out_dir, self.layout = plan, out_dir, layout
        self.as_dcp, self.side_files, self.shard_size = as_dcp, side_files, shard_size_bytes
        self.shards = ([(DCP_METADATA, []), (_dcp_writer().DATA, sorted(layout))] if as_dcp else
                       plan_shards(layout, plan.dtype, shard_size_bytes))
        self.shard_of = {n: i for i, (_, names) in enumerate(self.shards) for n in names}
        self.metadata = {"format": "pt", "wsm_merge": json.dumps(plan.recipe(), sort_keys=True)}
        self.writer, self.shard, self.digests = None, -1, {}  # digests: shard index -> its files' digests
        self.open_writer = SafetensorsWriter  # or a sink's open (merge_plans' sinks): same bytes, kept in memory
        if tmp is not None:
            self.tmp = tmp
            return
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(out_dir)  # also removes those left by a killed merge of the same target
        self.tmp.mkdir()

    def start(self, name: str) -> None:
        """Tensor ``name`` begins: open its shard's writer (closing the previous shard) if needed."""
        if self.as_dcp and self.writer is None:
            self.writer = _dcp_writer()(self.tmp)
        elif not self.as_dcp and self.shard_of[name] != self.shard:
            self.finish()
            self.shard = self.shard_of[name]
            file_name, names = self.shards[self.shard]
            entries = [(n, out_st_dtype(self.layout[n][0], self.plan.dtype), self.layout[n][1]) for n in names]
            self.writer = self.open_writer(self.tmp / file_name, entries, self.metadata)

    def write(self, name: str, data) -> None:
        """The next piece of tensor ``name`` (a DCP output takes whole tensors)."""
        if self.as_dcp:
            self.writer.write_array(name, out_st_dtype(self.layout[name][0], self.plan.dtype), self.layout[name][1],
                                    data)
        else:
            self.writer.write(name, data)

    def finish(self) -> None:
        """Close (and fsync) the open shard and keep its digest."""
        if self.writer is not None:
            self.writer.close()
            self.digests[self.shard] = self.writer.digests() if self.as_dcp else [self.writer.digest()]
            self.writer = None

    def close(self, streamed: list[str], input_dtypes: list[str], accumulated: str, provenance) -> MergeResult:
        """Write index, side files and merge.json into the temporary folder (every shard is written);
        ``streamed``: the identities of the plan's checkpoints, as read."""
        for checkpoint, planned, seen in zip(self.plan.checkpoints, self.plan.identities, streamed):
            if planned is not None and planned != seen:
                raise CheckpointError(f"Checkpoint {checkpoint.path} changed between planning and merging (its "
                                      "content identity differs). Wait until it is completely written, then rerun.")
        plan = self.plan.with_identities(streamed)
        if len(self.shards) > 1 and not self.as_dcp:
            weight_map = {n: f for f, names in self.shards for n in names}
            total_size = sum(tensor_nbytes(out_st_dtype(st, plan.dtype), shape) for st, shape in self.layout.values())
            write_durable(self.tmp / INDEX_FILE, json.dumps({"metadata": {"total_size": total_size},
                                                             "weight_map": weight_map}, indent=1))
        side_files = _copy_side_files(plan.checkpoints[-1], self.side_files, self.tmp)
        identity = combine([d for _, ds in sorted(self.digests.items()) for d in ds], config_of(self.tmp))
        record = {**plan.describe(), "input_dtypes": input_dtypes, "accumulated": accumulated,
                  "output": {"identity": identity, "files": [f for f, _ in self.shards], "side_files": side_files},
                  "package_version": _version(), "note": provenance or {}}
        write_durable(self.tmp / "merge.json", json.dumps(record, indent=1))
        fsync_folder(self.tmp)
        return MergeResult(self.out_dir, plan.key, identity, 0, 0.0, len(self.shards))

    def publish(self, overwrite: bool) -> None:
        _publish(self.tmp, self.out_dir, overwrite)

    def discard(self) -> None:
        """Delete the temporary folder; a writer whose close fails again (a full disk) does not stop that."""
        if self.writer is not None:
            with contextlib.suppress(OSError):
                self.writer.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)


def plan_shards(layout, dtype, shard_size_bytes) -> list[tuple[str, list[str]]]:
    """Output shards (file name, tensor names) of at most ``shard_size_bytes`` each, in name order."""
    groups: list[list[str]] = [[]]
    size = 0
    for name in sorted(layout):
        nbytes = tensor_nbytes(out_st_dtype(layout[name][0], dtype), layout[name][1])
        if groups[-1] and size + nbytes > shard_size_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    if len(groups) == 1:
        return [(SINGLE_FILE, groups[0])]
    return [(f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors", g) for i, g in enumerate(groups)]


def check_target(checkpoints, out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that is a file, exists (unless ``overwrite`` and it is a merge output), or
    overlaps an input."""
    for path in (out_dir, *out_dir.parents):
        if path.exists() and not path.is_dir():
            raise MergeError(f"--out {out_dir}: {path} is a file, not a folder (a merge is written as a folder). "
                             "Choose another --out, or move that file away.")
    if out_dir.exists() and not overwrite:
        raise MergeError(f"Output folder {out_dir} already exists. Choose another --out, or pass --overwrite "
                         "to replace it (it is replaced only once the new merge is complete).")
    out = out_dir.resolve()
    for c in checkpoints:
        inp = c.path.resolve()
        if out == inp or inp.is_relative_to(out) or out.is_relative_to(inp):
            raise MergeError(f"Output folder {out_dir} is, holds or lies inside the input {c.path}; replacing it "
                             "would destroy the checkpoints. Write the merge to a folder outside the series.")
    if out_dir.exists():
        _check_replaceable(out_dir)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse unless ``out_dir`` is empty or a previous merge output: a merge.json listing every file it holds."""
    if not any(out_dir.iterdir()):
        return
    way_out = "Nothing was deleted. Choose another --out, or move or delete the folder yourself and rerun."
    try:
        output = json.loads((out_dir / "merge.json").read_text())["output"]
        written = {"merge.json", INDEX_FILE, *output["files"], *output["side_files"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise MergeError(f"--overwrite replaces only a previous merge output, and {out_dir} is not one (no "
                         f"merge.json listing the files it wrote). {way_out}") from None
    foreign = sorted(p.name + "/" * p.is_dir() for p in out_dir.iterdir() if p.is_dir() or p.name not in written)
    if foreign:
        raise MergeError(f"--overwrite replaces only a previous merge output, and {out_dir} also holds what a merge "
                         f"did not write: {', '.join(foreign[:5])}{' …' if len(foreign) > 5 else ''}. {way_out}")


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not overwrite:
            raise MergeError(f"Output folder {out_dir} appeared while merging; nothing was replaced.")
        _check_replaceable(out_dir)
        trash = temp_path(out_dir)  # removed by the next run if this one is killed between the renames
        os.replace(out_dir, trash)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(trash, out_dir)  # put the old model back rather than leave the path empty
            raise
        fsync_folder(out_dir.parent)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
        fsync_folder(out_dir.parent)


def fsync_folder(folder: Path) -> None:
    """Make ``folder``'s entries (a rename into it, new files) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and fsync it (the folder is fsynced once, after every file)."""
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_side_files(newest: Checkpoint, hf_config: Path | None, dest: Path) -> list[str]:
    """Copy (and fsync) config, generation config and tokenizer files of ``hf_config`` or else the newest
    checkpoint (so from_pretrained works); return their names."""
    source = hf_config or newest.path
    if not source.is_dir():
        return []
    copied = []
    for item in sorted(source.iterdir()):
        if is_side_file(item) and item not in newest.files:
            shutil.copy2(item, dest / item.name)
            with open(dest / item.name, "rb") as handle:
                os.fsync(handle.fileno())
            copied.append(item.name)
    return copied


def _dcp_writer():
    """``dcp_io.DcpWriter`` (imported on first use: it imports torch, which safetensors merges never need)."""
    from wsm_exp.merging.dcp_io import DcpWriter

    return DcpWriter


def _version() -> str:
    from wsm_exp import __version__

    return __version__
