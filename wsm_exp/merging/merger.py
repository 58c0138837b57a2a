"""Streaming weighted merge of a ``MergePlan``, published atomically with provenance.

Tensor by tensor from memory-mapped files: accumulate ``Σ w_i θ_i`` in fp32 (or fp64) as
``acc.addcmul_(θ_i, w_i)`` in checkpoint order (the arithmetic of mergekit's ``linear`` with
``normalize: false``, so both give bit-identical results for the same weights), write the
result in the input dtype (or the plan's dtype), shard past ``shard_size_bytes``. Memory stays
near one tensor whatever N is. Every input byte the merge reads is hashed on the way (inputs the
identity cache knows are not), so the plan's key and the input identities come without a second
read; the output's identity is hashed as it is written. Everything goes into a hidden temporary
folder beside ``out_dir``, renamed into place at the end: a crash leaves no partial model.
``merge_plans`` computes several merges in one pass (the sweep's merge stage uses it), optionally
in ``workers`` processes over disjoint output shards; DCP inputs (``dcp_io``) are read tensor by
tensor and written as DCP, or as a Hugging Face folder with ``hf_config``.

Example:
    >>> from wsm_exp.merging.series import load_series, select_window            # doctest: +SKIP
    >>> plan = build_plan(select_window(load_series("ckpts/run"), quantity=4), curve="1-sqrt")  # doctest: +SKIP
    >>> merge_or_reuse(plan, "cache/merges").out_dir                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from wsm_exp.atomic import temp_path
from wsm_exp.merging.identity import StreamingIdentity, combine, config_of, tensor_digest
from wsm_exp.merging.plan import MergePlan, build_plan
from wsm_exp.merging.dcp_io import DcpCheckpoint, DcpWriter
from wsm_exp.merging.series import DCP_METADATA, INDEX_FILE, SINGLE_FILE, Checkpoint, validate_checkpoints
from wsm_exp.merging.st_io import CheckpointError, tensor_nbytes
from wsm_exp.merging.writer import TORCH_TO_ST, SafetensorsWriter

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
SKIPPED_FILES = ("trainer_state", "optimizer", "scheduler", "rng_state", "training_args", "merge.json")
DEFAULT_SHARD_BYTES = 2 * 1024**3  # 2 GiB: few shards for 7B-class models, bounded memory


class MergeError(ValueError):
    """Inputs or options that cannot be merged; nothing was written."""


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


def merge_or_reuse(plan: MergePlan, merges_dir: str | Path, **options) -> MergeResult:
    """The merged model of ``plan`` at ``<merges_dir>/<key>``, merged unless it is there already.

    A process that finds another merging the same key waits for it (a lock on
    ``<merges_dir>/.<key>.lock``, removed when done) and reuses its result. ``options`` go to ``merge_plan``.
    """
    plan = plan.identified()
    merges_dir = Path(merges_dir)
    out_dir = merges_dir / plan.key
    merges_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(merges_dir / f".{plan.key}.lock"):
        record_path = out_dir / "merge.json"
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            return MergeResult(out_dir, plan.key, record["output"]["identity"], 0, 0.0,
                               len(record["output"]["files"]), reused=True)
        return merge_plan(plan, out_dir, overwrite=True, **options)  # a folder without merge.json is debris


@contextlib.contextmanager
def exclusive(path: Path):
    """An exclusive lock on ``path``, which is deleted on release (so no lock files pile up).

    A waiter may have opened the file just before its holder deleted it: after locking, it checks
    that ``path`` still names the locked file, and starts over if not.
    """
    while True:
        handle = open(path, "a")  # noqa: SIM115 (closed below)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def merge_checkpoints(checkpoints: Sequence[Checkpoint], weights: Sequence[float], out_dir: str | Path, *,
                      dtype: str | None = None, accumulate: str = "float32", **options) -> MergeResult:
    """Write ``Σ weights[i] · checkpoints[i]`` (weights as given, oldest first) to ``out_dir``."""
    plan = build_plan(checkpoints, weights=weights, normalize=False, dtype=dtype, accumulate=accumulate,
                      identify=False)
    return merge_plan(plan, out_dir, **options)


def merge_plan(plan: MergePlan, out_dir: str | Path, **options) -> MergeResult:
    """Merge ``plan`` into ``out_dir``; ``merge.json`` there is the plan (with its key) plus the output's identity.

    ``options`` as for ``merge_plans`` (``provenance`` is free-form context recorded under ``note``)."""
    return merge_plans([plan], [out_dir], **options)[0]


def merge_plans(
    plans: Sequence[MergePlan], out_dirs: Sequence[str | Path], *,
    provenance: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    overwrite: bool = False, shard_size_bytes: int = DEFAULT_SHARD_BYTES, allow_nonfinite: bool = False,
    progress: bool = True, hf_config: str | Path | None = None, workers: int = 1, executor=None,
) -> list[MergeResult]:
    """Several merges in one streaming pass over the union of their checkpoints.

    Each input tensor is read (and hashed) once and accumulated into every output that uses it, in
    each plan's own checkpoint order, so each output is bit-identical to its own ``merge_plan``.
    An error in one stops them all and publishes none. ``provenance`` (free-form, recorded as merge.json's
    ``note``) is one dict for every output or one per plan. Safetensors inputs give a Hugging Face
    folder; DCP inputs give a one-rank DCP checkpoint, or with ``hf_config`` (a folder with the
    model's ``config.json`` and tokenizer, copied beside the weights) a Hugging Face folder.

    ``workers`` > 1 merges disjoint sets of output shards in that many processes (each reads only
    its shards' tensors); the index, side files and merge.json are written once, at the end, and
    the result is bit-identical to one process. A merge with one output shard (or DCP output, or
    outputs whose shards differ) runs in one process. ``executor`` (anything with ``map(fn, *iterables)``)
    runs those workers instead of local processes: the sweep's Slurm array (wsm_exp.sweep.merge_array).
    """
    started = time.perf_counter()
    out_dirs = [Path(o) for o in out_dirs]
    if len(plans) != len(out_dirs) or len({o.resolve() for o in out_dirs}) != len(out_dirs):
        raise MergeError(f"{len(plans)} merges for {len(out_dirs)} output folders: give each merge its own folder.")
    inputs = _union(plans)
    for plan, out_dir in zip(plans, out_dirs):
        _check_target(plan.checkpoints, out_dir, overwrite)
    layout = validate_checkpoints(inputs)
    input_dtypes = sorted({st for st, _ in layout.values()})
    _check_float_dtypes(layout, input_dtypes, inputs[0])
    as_dcp = hf_config is None and inputs[0].files[0].name == DCP_METADATA
    side_files = Path(hf_config) if hf_config is not None else None
    if side_files is not None and not (side_files / "config.json").is_file():
        raise MergeError(f"--hf-config {side_files} has no config.json: give the folder of the Hugging Face model "
                         "these checkpoints are (its config.json and tokenizer files are copied beside the merge).")
    outputs: list[_Output] = []
    try:
        for plan, out_dir in zip(plans, out_dirs):
            outputs.append(_Output(plan, out_dir, inputs, layout, input_dtypes, shard_size_bytes, as_dcp,
                                   side_files))
        streams = [StreamingIdentity(c) for c in inputs]
        groups = _worker_groups(outputs, workers)
        if groups is None:
            desc = f"merge {out_dirs[0].name}" + (f" (+{len(plans) - 1})" if len(plans) > 1 else "")
            bytes_read = _stream(outputs, inputs, streams, sorted(layout), allow_nonfinite, progress, desc)
        else:
            bytes_read = _stream_in_workers(outputs, inputs, streams, groups, allow_nonfinite, executor)
        identities = [s.identity() for s in streams]
        notes = provenance if isinstance(provenance, (list, tuple)) else [provenance] * len(outputs)
        results = [output.close(identities, note) for output, note in zip(outputs, notes)]
        for output in outputs:
            output.publish(overwrite)
    except BaseException:
        for output in outputs:
            output.discard()
        raise
    seconds = time.perf_counter() - started
    return [replace(r, bytes_read=bytes_read, seconds=seconds) for r in results]


def _stream(outputs, inputs, streams, names, allow_nonfinite, progress=False, desc="merge") -> int:
    """Read ``names`` (sorted) from every input once into every output; return the tensor bytes read."""
    with ExitStack() as stack:
        handles = [_open(stack, c) for c in inputs]
        layout = outputs[0].layout
        total = sum(tensor_nbytes(*layout[n]) for n in names) * len(inputs)
        bar = stack.enter_context(tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress,
                                       leave=False))
        reader = _Reader(inputs, handles, streams, bar)
        for name in names:
            for output in outputs:
                output.start(name)
            for index, tensor in reader.tensors(name):
                for output in outputs:
                    output.add(index, name, tensor)
            for output in outputs:
                output.finish(name, reader, allow_nonfinite)
        for output in outputs:
            output.close_shard()
    return reader.bytes_read


def _worker_groups(outputs: list[_Output], workers: int) -> list[list[str]] | None:
    """Tensor names per worker (whole output shards, balanced by bytes), or None for one process."""
    shards = [names for _, names in outputs[0].shards]
    if workers <= 1 or len(shards) < 2 or any(o.as_dcp or [n for _, n in o.shards] != shards for o in outputs):
        return None
    layout, bins = outputs[0].layout, [[] for _ in range(min(workers, len(shards)))]
    sizes = [0] * len(bins)
    for names in sorted(shards, key=lambda ns: -sum(tensor_nbytes(*layout[n]) for n in ns)):
        least = sizes.index(min(sizes))
        bins[least] += names
        sizes[least] += sum(tensor_nbytes(*layout[n]) for n in names)
    return [sorted(b) for b in bins]


def _stream_in_workers(outputs, inputs, streams, groups, allow_nonfinite, executor=None) -> int:
    """``_stream`` over disjoint shard groups in forked processes (or the tasks of ``executor``, anything with
    ``map(fn, *iterables)``, e.g. a Slurm array); their digests come back to this one."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    wanted = [set(s.trees) for s in streams]
    jobs = [([o.plan for o in outputs], [o.out_dir for o in outputs], [o.tmp for o in outputs], inputs,
             outputs[0].layout, outputs[0].input_dtypes, outputs[0].shard_size, names, wanted, allow_nonfinite,
             max(1, (os.cpu_count() or 1) // len(groups))) for names in groups]
    pool = (contextlib.nullcontext(executor) if executor is not None else
            ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("fork")))
    with pool as workers:
        done = list(workers.map(_worker, *zip(*jobs)))
    bytes_read = 0
    for shard_digests, tensor_digests, read in done:
        bytes_read += read
        for output, digests in zip(outputs, shard_digests):
            output.digests.update(digests)
        for stream, digests in zip(streams, tensor_digests):
            for (file_index, name), digest in digests.items():
                stream.trees[file_index].add_digest(name, digest)
    return bytes_read


def _worker(plans, out_dirs, tmps, inputs, layout, input_dtypes, shard_size, names, wanted, allow_nonfinite,
            threads):
    """One worker of ``_stream_in_workers``: writes its shards; returns their digests and the input tensors'."""
    torch.set_num_threads(threads)
    outputs = [_Output(p, o, inputs, layout, input_dtypes, shard_size, tmp=t) for p, o, t in zip(plans, out_dirs, tmps)]
    recorders = [_DigestRecorder(w) for w in wanted]
    read = _stream(outputs, inputs, recorders, names, allow_nonfinite)
    return [o.digests for o in outputs], [r.digests for r in recorders], read


class _DigestRecorder:
    """Stands in for StreamingIdentity in a worker: per-tensor digests of the files still to be hashed."""

    def __init__(self, wanted: set[int]):
        self.wanted, self.digests = wanted, {}

    def wants(self, file_index: int) -> bool:
        return file_index in self.wanted

    def add(self, file_index: int, name: str, data) -> None:
        self.digests[(file_index, name)] = tensor_digest(data)


def _union(plans: Sequence[MergePlan]) -> list[Checkpoint]:
    """The checkpoints of all plans, once each, in an order every plan follows (by step when all ascend)."""
    inputs = list(dict.fromkeys(c for plan in plans for c in plan.checkpoints))
    if all(_ascending(plan.checkpoints) for plan in plans):
        inputs.sort(key=lambda c: (c.step, str(c.path)))
    position = {c: i for i, c in enumerate(inputs)}
    for plan in plans:
        order = [position[c] for c in plan.checkpoints]
        if any(a >= b for a, b in zip(order, order[1:])):
            raise MergeError(f"The merge of steps {[c.step for c in plan.checkpoints]} lists a checkpoint twice, or "
                             "orders its checkpoints unlike the other merges of this pass; merge it separately.")
    return inputs


def _ascending(checkpoints: Sequence[Checkpoint]) -> bool:
    return all(a.step < b.step for a, b in zip(checkpoints, checkpoints[1:]))


class _Output:
    """One plan's output during a pass: its accumulator, its shard writers and its temporary folder."""

    def __init__(self, plan: MergePlan, out_dir: Path, inputs, layout, input_dtypes, shard_size_bytes: int,
                 as_dcp: bool = False, side_files: Path | None = None, tmp: Path | None = None):
        self.plan, self.out_dir, self.layout, self.input_dtypes = plan, out_dir, layout, input_dtypes
        self.as_dcp, self.side_files, self.shard_size = as_dcp, side_files, shard_size_bytes
        self.position = {inputs.index(c): j for j, c in enumerate(plan.checkpoints)}  # pass index -> plan index
        # fp64 inputs are never summed in a narrower type than they are stored in
        self.accumulated = "float64" if "F64" in input_dtypes else plan.accumulate
        self.shards = ([(DCP_METADATA, []), (DcpWriter.DATA, sorted(layout))] if as_dcp else
                       _plan_shards(layout, plan.dtype, shard_size_bytes))
        self.shard_of = {n: i for i, (_, names) in enumerate(self.shards) for n in names}
        # one accumulator reused for every tensor: no allocation (and page faults) per tensor
        largest = max((_numel(shape) for st, shape in layout.values() if st in SAFETENSORS_DTYPES), default=0)
        self.scratch = torch.empty(largest, dtype=DTYPES[self.accumulated])
        self.metadata = {"format": "pt", "wsm_merge": json.dumps(plan.recipe(), sort_keys=True)}
        self.writer, self.shard, self.digests = None, -1, {}  # digests: shard index -> its files' digests
        if tmp is not None:  # a worker writing some shards of a folder its parent made
            self.tmp = tmp
            return
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(out_dir)  # also removes those left by a killed merge of the same target
        self.tmp.mkdir()

    def start(self, name: str) -> None:
        if self.as_dcp and self.writer is None:
            self.writer = DcpWriter(self.tmp)
        elif not self.as_dcp and self.shard_of[name] != self.shard:
            self.close_shard()
            self.shard = self.shard_of[name]
            file_name, names = self.shards[self.shard]
            entries = [(n, _out_st_dtype(self.layout[n][0], self.plan.dtype), self.layout[n][1]) for n in names]
            self.writer = SafetensorsWriter(self.tmp / file_name, entries, self.metadata)
        st_dtype, shape = self.layout[name]
        self.acc = self.scratch[:_numel(shape)].view(shape).zero_() if st_dtype in SAFETENSORS_DTYPES else None
        self.first = None

    def add(self, index: int, name: str, tensor: torch.Tensor) -> None:
        j = self.position.get(index)
        if j is None:
            return
        if self.acc is not None:
            self.acc.addcmul_(tensor.to(self.acc.dtype), torch.tensor(self.plan.weights[j], dtype=self.acc.dtype))
        elif self.first is None:
            self.first = tensor
        elif not torch.equal(self.first, tensor):
            checkpoints = self.plan.checkpoints
            raise MergeError(f"Non-float tensor {name!r} differs between {checkpoints[0].path} and "
                             f"{checkpoints[j].path}; "
                             "integer buffers cannot be averaged. Merge checkpoints whose integer tensors agree.")

    def finish(self, name: str, reader: _Reader, allow_nonfinite: bool) -> None:
        if self.acc is None:
            self.writer.write(name, self.first.clone())
            return
        st_dtype = self.layout[name][0]
        out_dtype = SAFETENSORS_DTYPES[st_dtype] if self.plan.dtype is None else DTYPES[self.plan.dtype]
        merged = self.acc.to(out_dtype)  # may alias the accumulator: written before the next tensor
        # No pass over the inputs: NaN/Inf in any input (even with weight 0, as 0·Inf = NaN) reaches the
        # output and then its total; only a non-finite total triggers the scan that names the culprit.
        if not allow_nonfinite and not torch.isfinite(merged.sum()) and not torch.isfinite(merged).all():
            _raise_nonfinite(name, reader, sorted(self.position), out_dtype)
        self.writer.write(name, merged)

    def close(self, identities: list[str], provenance) -> MergeResult:
        """Write index, side files and merge.json into the temporary folder (every shard is written)."""
        streamed = [identities[i] for i in sorted(self.position)]
        for checkpoint, planned, seen in zip(self.plan.checkpoints, self.plan.identities, streamed):
            if planned is not None and planned != seen:
                raise CheckpointError(f"Checkpoint {checkpoint.path} changed between planning and merging (its "
                                      "content identity differs). Wait until it is completely written, then rerun.")
        plan = self.plan.with_identities(streamed)
        if len(self.shards) > 1 and not self.as_dcp:
            weight_map = {n: f for f, names in self.shards for n in names}
            total_size = sum(tensor_nbytes(_out_st_dtype(st, plan.dtype), shape) for st, shape in self.layout.values())
            (self.tmp / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total_size},
                                                           "weight_map": weight_map}, indent=1))
        _copy_side_files(plan.checkpoints[-1], self.side_files, self.tmp)
        identity = combine([d for _, ds in sorted(self.digests.items()) for d in ds], config_of(self.tmp))
        record = {**plan.describe(), "input_dtypes": self.input_dtypes, "accumulated": self.accumulated,
                  "output": {"identity": identity, "files": [f for f, _ in self.shards]},
                  "package_version": _version(), "note": provenance or {}}
        (self.tmp / "merge.json").write_text(json.dumps(record, indent=1))
        return MergeResult(self.out_dir, plan.key, identity, 0, 0.0, len(self.shards))

    def publish(self, overwrite: bool) -> None:
        _publish(self.tmp, self.out_dir, overwrite)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.digests[self.shard] = self.writer.digests() if self.as_dcp else [self.writer.digest()]
            self.writer = None


class _Reader:
    """Reads a tensor from each input once, hashing the bytes for identities not yet known."""

    def __init__(self, checkpoints, handles, streams, bar):
        self.checkpoints, self.handles, self.streams, self.bar, self.bytes_read = checkpoints, handles, streams, bar, 0

    def tensors(self, name: str):
        """(input index, tensor) for every input, in pass order."""
        for index, (handle_of, stream) in enumerate(zip(self.handles, self.streams)):
            handle, file_index = handle_of[name]
            tensor = handle.get_tensor(name)
            if stream.wants(file_index):
                stream.add(file_index, name, tensor.reshape(-1).view(torch.uint8).numpy())
            size = tensor.numel() * tensor.element_size()
            self.bytes_read += size
            self.bar.update(size)
            yield index, tensor


def _raise_nonfinite(name, reader: _Reader, indices, out_dtype) -> None:
    for index in indices:
        checkpoint = reader.checkpoints[index]
        if not torch.isfinite(reader.handles[index][name][0].get_tensor(name)).all():
            raise MergeError(
                f"Tensor {name!r} of checkpoint {checkpoint.path} (step {checkpoint.step}) contains NaN or Inf. "
                "Drop that checkpoint from the window (pick another end step), or pass allow_nonfinite "
                "(--allow-nonfinite) to merge it anyway."
            )
    raise MergeError(
        f"The weighted sum of tensor {name!r} overflows the accumulation or output dtype ({out_dtype}) although "
        "every input is finite. Check the weights (a decay emulation's weights sum to 1) or write a wider "
        "dtype (--dtype float32)."
    )


def _check_float_dtypes(layout, input_dtypes, first: Checkpoint) -> None:
    unsupported = [st for st in input_dtypes if st.startswith("F") and st not in SAFETENSORS_DTYPES]
    if unsupported:
        name = next(n for n, (st, _) in layout.items() if st in unsupported)
        raise MergeError(f"Tensor {name!r} of {first.path} is {unsupported[0]}; only F64, F32, BF16 and F16 "
                         "float tensors can be averaged. Dequantise the checkpoints (e.g. to bfloat16) first.")


def _plan_shards(layout, dtype, shard_size_bytes) -> list[tuple[str, list[str]]]:
    groups: list[list[str]] = [[]]
    size = 0
    for name in sorted(layout):
        nbytes = tensor_nbytes(_out_st_dtype(layout[name][0], dtype), layout[name][1])
        if groups[-1] and size + nbytes > shard_size_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    if len(groups) == 1:
        return [(SINGLE_FILE, groups[0])]
    return [(f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors", g) for i, g in enumerate(groups)]


def _open(stack: ExitStack, checkpoint: Checkpoint) -> dict[str, tuple[Any, int]]:
    """tensor name -> (open safetensors handle, index of its file), over the checkpoint's files.

    A DCP checkpoint is one handle whose file index is -1: its files are hashed by a plain read."""
    if checkpoint.files[0].name == DCP_METADATA:
        handle = DcpCheckpoint.open(checkpoint.path)
        return {name: (handle, -1) for name in handle.keys()}
    by_name = {}
    for index, file in enumerate(checkpoint.files):
        handle = stack.enter_context(safe_open(str(file), framework="pt"))
        for name in handle.keys():
            by_name[name] = (handle, index)
    return by_name


def _check_target(checkpoints, out_dir: Path, overwrite) -> None:
    if out_dir.exists() and not overwrite:
        raise MergeError(f"Output folder {out_dir} already exists. Choose another --out, or pass --overwrite "
                         "to replace it (it is replaced only once the new merge is complete).")
    out = out_dir.resolve()
    for c in checkpoints:
        inp = c.path.resolve()
        if out == inp or inp.is_relative_to(out) or out.is_relative_to(inp):
            raise MergeError(f"Output folder {out_dir} is, holds or lies inside the input {c.path}; replacing it "
                             "would destroy the checkpoints. Write the merge to a folder outside the series.")


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not overwrite:
            raise MergeError(f"Output folder {out_dir} appeared while merging; nothing was replaced.")
        trash = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, trash)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(trash, out_dir)  # put the old model back rather than leave the path empty
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def _copy_side_files(newest: Checkpoint, hf_config: Path | None, dest: Path) -> None:
    """config, generation config and tokenizer files of ``hf_config`` or else the newest checkpoint
    (so from_pretrained works)."""
    source = hf_config or newest.path
    if not source.is_dir():
        return
    for item in source.iterdir():
        if (item.is_file() and not item.name.endswith(".safetensors") and item.name != INDEX_FILE
                and item not in newest.files and not item.name.startswith(SKIPPED_FILES)):
            shutil.copy2(item, dest / item.name)


def _out_st_dtype(st_dtype: str, dtype: str | None) -> str:
    """safetensors dtype of a tensor in the output: float tensors take ``dtype`` when given."""
    if dtype is not None and st_dtype in SAFETENSORS_DTYPES:
        return TORCH_TO_ST[DTYPES[dtype]]
    return st_dtype


def _numel(shape) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _version() -> str:
    from wsm_exp import __version__

    return __version__


__all__ = ["MergeError", "MergeResult", "exclusive", "merge_checkpoints", "merge_or_reuse", "merge_plan", "merge_plans"]
