"""Streaming weighted merge of a ``MergePlan``, published atomically with provenance.

Piece by piece (``PIECE_ELEMENTS`` of a tensor at a time, from memory-mapped files at the offsets
of the checked headers): ``acc = w_1·θ_1``, then ``acc = acc + w_i·θ_i`` in checkpoint order, a
non-fused multiply-add with each operation rounded in fp32 (or fp64), then narrowed to the input
dtype (or the plan's dtype): the arithmetic of ``arith``, in numpy, so ``wsm-merge`` on safetensors
never imports torch. Each finished piece goes to a writer thread (``writer``: header first, shards
past ``shard_size_bytes``) while the next is computed; memory stays at a few pieces per output
whatever the model size or N. Every input byte the merge reads is hashed on the way (inputs the
identity cache knows are not), so the plan's key and the input identities come without a second
read; the output's identity is hashed as it is written. Everything goes into a hidden temporary
folder beside ``out_dir``, renamed into place at the end: a crash leaves no partial model.
``merge_plans`` computes several merges in one pass (the sweep's merge stage uses it), optionally
in ``workers`` processes over disjoint output shards; DCP inputs (``dcp_io``, which imports torch)
are read a whole tensor at a time and written as DCP, or as a Hugging Face folder with ``hf_config``.

Example:
    >>> from wsm_exp.merging.series import load_series, select_window            # doctest: +SKIP
    >>> plan = build_plan(select_window(load_series("ckpts/run"), quantity=4), curve="1-sqrt")  # doctest: +SKIP
    >>> merge_or_reuse(plan, "cache/merges").out_dir                              # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import mmap
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from wsm_exp.atomic import temp_path
from wsm_exp.merging.arith import ACCUMULATE_DTYPES, FLOAT_DTYPES, NUMPY_DTYPES, accumulate, all_finite, narrow, widen
from wsm_exp.merging.identity import StreamingIdentity, combine, config_of, tensor_hasher
from wsm_exp.merging.plan import MergePlan, build_plan
from wsm_exp.merging.series import DCP_METADATA, INDEX_FILE, SINGLE_FILE, Checkpoint, validate_checkpoints
from wsm_exp.merging.st_io import CheckpointError, read_header, tensor_nbytes
from wsm_exp.merging.writer import SafetensorsWriter

OUTPUT_ST_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64"}
PIECE_ELEMENTS = 1 << 17  # 512 KiB of fp32: a piece's accumulator and products stay in the L2 cache
WRITE_SLOTS = 3  # pieces per output being computed or written at once (the writer thread trails by up to two)
log = logging.getLogger(__name__)
SKIPPED_FILES = ("trainer_state", "optimizer", "scheduler", "rng_state", "training_args", "merge.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".distcp")  # never copied
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
    sinks: Sequence[Any] | None = None,
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
    ``sinks`` (one per plan, ``memory_sink.MemorySink``) take each output's shards in place of its files,
    in this process; the folder then holds only the side files and merge.json (``memory_sink.merge_in_memory``).
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
    if sinks is not None and (as_dcp or len(sinks) != len(plans)):
        raise MergeError("An in-memory merge needs one sink per merge and a Hugging Face output: for DCP "
                         "checkpoints pass hf_config (the model's folder with config.json and tokenizer).")
    side_files = Path(hf_config) if hf_config is not None else None
    if side_files is not None and not (side_files / "config.json").is_file():
        raise MergeError(f"--hf-config {side_files} has no config.json: give the folder of the Hugging Face model "
                         "these checkpoints are (its config.json and tokenizer files are copied beside the merge).")
    outputs: list[_Output] = []
    try:
        for plan, out_dir in zip(plans, out_dirs):
            outputs.append(_Output(plan, out_dir, inputs, layout, input_dtypes, shard_size_bytes, as_dcp,
                                   side_files))
        for output, sink in zip(outputs, sinks or ()):
            output.open_writer = sink.open
        streams = [StreamingIdentity(c) for c in inputs]
        groups = _worker_groups(outputs, 1 if sinks is not None else workers)
        if groups is None and workers > 1:
            log.info("merging in one process, not %d: the outputs have one shard each or are DCP (a smaller "
                     "shard size gives more shards to split)", workers)
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
    """Read ``names`` (sorted) from every input once into every output; return the tensor bytes read.

    Piece by piece: every input's piece of a tensor goes into every output that uses it, then each
    output narrows and writes that piece (so the accumulators are one piece each)."""
    layout = outputs[0].layout
    with ExitStack() as stack, np.errstate(over="ignore", invalid="ignore"):  # non-finite sums are checked below
        pool = stack.enter_context(_WriterThread())
        for output in outputs:
            output.pool = pool
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = sum(tensor_nbytes(*layout[n]) for n in names) * len(inputs)
            bar = stack.enter_context(tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False))
        reader = _Reader(inputs, streams, layout, bar)
        for name in names:
            for output in outputs:
                output.start(name)
            for start, stop in reader.pieces(name):
                for output in outputs:
                    output.begin_piece(stop - start)
                for index in range(len(inputs)):
                    data = reader.read(index, name, start, stop)
                    for output in outputs:
                        output.add(index, name, data)
                for output in outputs:
                    output.end_piece(name, reader, allow_nonfinite)
        for output in outputs:
            output.close_shard()
    return reader.bytes_read


class _WriterThread:
    """One thread running submitted calls in order (the pass's writes); ``submit`` returns a handle whose
    ``result()`` waits for the call and re-raises its error. Leaving the ``with`` waits for every call."""

    def __init__(self):
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="wsm-merge-write", daemon=True)

    def __enter__(self) -> _WriterThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.calls.put(None)
        self.thread.join()

    def submit(self, fn, *args) -> _Call:
        call = _Call(fn, args)
        self.calls.put(call)
        return call

    def _run(self) -> None:
        while (call := self.calls.get()) is not None:
            call.run()


class _Call:
    def __init__(self, fn, args):
        self.fn, self.args, self.error, self.done = fn, args, None, threading.Event()

    def run(self) -> None:
        try:
            self.fn(*self.args)
        except BaseException as err:  # noqa: BLE001 — handed to the caller of result()
            self.error = err
        self.done.set()

    def result(self) -> None:
        self.done.wait()
        if self.error is not None:
            raise self.error


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
             outputs[0].layout, outputs[0].input_dtypes, outputs[0].shard_size, names, wanted, allow_nonfinite)
            for names in groups]
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


def _worker(plans, out_dirs, tmps, inputs, layout, input_dtypes, shard_size, names, wanted, allow_nonfinite):
    """One worker of ``_stream_in_workers``: writes its shards; returns their digests and the input tensors'."""
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

    def add_digest(self, file_index: int, name: str, digest: bytes) -> None:
        self.digests[(file_index, name)] = digest


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
        self.shards = ([(DCP_METADATA, []), (_dcp().DcpWriter.DATA, sorted(layout))] if as_dcp else
                       _plan_shards(layout, plan.dtype, shard_size_bytes))
        self.shard_of = {n: i for i, (_, names) in enumerate(self.shards) for n in names}
        self.dtype = ACCUMULATE_DTYPES[self.accumulated]
        self.scratch = _Scratch(self.dtype)  # reused for every piece: no allocation (and page faults) per tensor
        self.metadata = {"format": "pt", "wsm_merge": json.dumps(plan.recipe(), sort_keys=True)}
        self.writer, self.shard, self.digests = None, -1, {}  # digests: shard index -> its files' digests
        self.pool = None  # the pass's writer thread (set by _stream)
        self.open_writer = SafetensorsWriter  # or a sink's open (merge_plans' sinks): same bytes, kept in memory
        self.pending, self.slot = collections.deque(), 0  # writes in flight, oldest first
        if tmp is not None:  # a worker writing some shards of a folder its parent made
            self.tmp = tmp
            return
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(out_dir)  # also removes those left by a killed merge of the same target
        self.tmp.mkdir()

    def start(self, name: str) -> None:
        if self.as_dcp and self.writer is None:
            self.writer = _dcp().DcpWriter(self.tmp)
        elif not self.as_dcp and self.shard_of[name] != self.shard:
            self.close_shard()
            self.shard = self.shard_of[name]
            file_name, names = self.shards[self.shard]
            entries = [(n, _out_st_dtype(self.layout[n][0], self.plan.dtype), self.layout[n][1]) for n in names]
            self.writer = self.open_writer(self.tmp / file_name, entries, self.metadata)
        self.in_st = self.layout[name][0]
        self.out_st = _out_st_dtype(self.in_st, self.plan.dtype)
        self.summed = self.in_st in FLOAT_DTYPES

    def begin_piece(self, size: int) -> None:
        while len(self.pending) >= WRITE_SLOTS:  # this piece's slot is free once the write before it is done
            self.pending.popleft().result()
        self.slot = (self.slot + 1) % WRITE_SLOTS
        self.acc = self.scratch.get(f"acc{self.slot}", size) if self.summed else None
        self.first = None

    def add(self, index: int, name: str, data: np.ndarray) -> None:
        """Input ``index``'s piece of tensor ``name`` (flat, as stored), if this merge uses that input."""
        j = self.position.get(index)
        if j is None:
            return
        if self.summed:
            wide = widen(data, self.in_st, self.scratch.get("wide", data.size))
            accumulate(self.acc, wide, self.plan.weights[j], self.scratch.get("tmp", data.size),
                       first=self.first is None)
            self.first = j  # not None: the next input is added
        elif self.first is None:
            self.first = data.copy()  # kept past the read, and written by the writer thread
        elif not np.array_equal(self.first, data):
            checkpoints = self.plan.checkpoints
            raise MergeError(f"Non-float tensor {name!r} differs between {checkpoints[0].path} and "
                             f"{checkpoints[j].path}; "
                             "integer buffers cannot be averaged. Merge checkpoints whose integer tensors agree.")

    def end_piece(self, name: str, reader: _Reader, allow_nonfinite: bool) -> None:
        if self.summed:
            merged, size = self.acc, self.acc.size
            if NUMPY_DTYPES[self.out_st] != self.dtype:
                into = self.scratch.get(f"{self.out_st}{self.slot}", size, NUMPY_DTYPES[self.out_st])
                merged = narrow(self.acc, self.out_st, into,
                                self.scratch.get("work", size, np.dtype(np.uint32)) if self.out_st == "BF16" else None)
            # No pass over the inputs: NaN/Inf in any input (even with weight 0, as 0·Inf = NaN) reaches the
            # output; only a non-finite output triggers the scan that names the culprit.
            if not allow_nonfinite and not all_finite(merged, self.out_st):
                _raise_nonfinite(name, reader, sorted(self.position), self.out_st)  # raises
        else:
            merged = self.first
        if self.as_dcp:  # one piece per tensor
            self.writer.write_array(name, self.out_st, self.layout[name][1], merged)
        else:  # written (and hashed) by the pass's writer thread while the next piece is computed
            self.pending.append(self.pool.submit(self.writer.write, name, merged))

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
        while self.pending:
            self.pending.popleft().result()
        if self.writer is not None:
            self.writer.close()
            self.digests[self.shard] = self.writer.digests() if self.as_dcp else [self.writer.digest()]
            self.writer = None


class _Scratch:
    """Named flat buffers, grown on demand and reused: a piece's accumulator, products, narrowed output."""

    def __init__(self, dtype: np.dtype):
        self.dtype, self.buffers = dtype, {}

    def get(self, role: str, size: int, dtype: np.dtype | None = None) -> np.ndarray:
        buffer = self.buffers.get(role)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[role] = np.empty(max(size, 1), dtype or self.dtype)
        return buffer[:size]


class _Reader:
    """Reads pieces of a tensor from every input, hashing the bytes of files whose identity is not known yet.

    Safetensors files are memory-mapped and read in place (no copy) at the offsets of their checked
    headers; a DCP checkpoint is read a whole tensor at a time (its chunks are ``torch.save`` blobs).
    Like every memory-mapped reader, a file truncated while it is being merged stops the process."""

    def __init__(self, checkpoints, streams, layout, bar):
        self.checkpoints, self.streams, self.layout, self.bar, self.bytes_read = checkpoints, streams, layout, bar, 0
        self.places = [_open(c, layout) for c in checkpoints]
        self.hashes = {}

    def pieces(self, name: str) -> list[tuple[int, int]]:
        """Element ranges of tensor ``name`` that are read together: ``PIECE_ELEMENTS`` each, or the whole
        tensor when an input is DCP."""
        numel = _numel(self.layout[name][1])
        step = max(numel, 1) if any(isinstance(p, _DcpPlace) for p in self.places) else PIECE_ELEMENTS
        return [(a, min(a + step, numel)) for a in range(0, numel, step)] or [(0, 0)]

    def read(self, index: int, name: str, start: int, stop: int, *, record: bool = True) -> np.ndarray:
        """Elements ``start:stop`` of tensor ``name`` of input ``index``, flat, as stored (bf16 as uint16 bits,
        non-float dtypes as bytes), read-only. ``record``: hash and count the bytes."""
        st_dtype = self.layout[name][0]
        dtype = NUMPY_DTYPES.get(st_dtype, np.dtype(np.uint8))
        width = tensor_nbytes(st_dtype, (1,))
        place = self.places[index]
        if isinstance(place, _DcpPlace):
            data = place.handle.get_array(name)
        else:
            mapped, file_index, offset = place[name]
            data = np.frombuffer(mapped, np.uint8, (stop - start) * width, offset + start * width)
            stream = self.streams[index]
            if record and stream.wants(file_index):
                key = (index, name)
                hasher = self.hashes.pop(key) if start else tensor_hasher()
                hasher.update(data)
                if stop == _numel(self.layout[name][1]):
                    stream.add_digest(file_index, name, hasher.digest())
                else:
                    self.hashes[key] = hasher
        if record:
            self.bytes_read += data.nbytes
            if self.bar is not None:
                self.bar.update(data.nbytes)
        return data.view(dtype)


@dataclass(frozen=True)
class _DcpPlace:
    handle: Any  # dcp_io.DcpCheckpoint


def _open(checkpoint: Checkpoint, layout) -> dict[str, tuple[mmap.mmap, int, int]] | _DcpPlace:
    """tensor name -> (its file mapped read-only, index of the file, offset of its data), over the
    checkpoint's files; a DCP checkpoint is one handle (its files are hashed by a plain read).
    A mapping is released when the last array over it goes (no explicit close while arrays remain)."""
    if checkpoint.files[0].name == DCP_METADATA:
        return _DcpPlace(_dcp().DcpCheckpoint.open(checkpoint.path))
    by_name = {}
    for index, file in enumerate(checkpoint.files):
        header = read_header(file)
        with open(file, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if len(mapped) != header.file_size:
            raise CheckpointError(f"{file} changed size while the merge started. Wait until it is completely "
                                  "written, then rerun.")
        for name, info in header.tensors.items():
            if layout.get(name) != (info.dtype, info.shape):
                raise CheckpointError(f"{file} changed while the merge started (tensor {name!r} is now {info.dtype} "
                                      f"{list(info.shape)}). Wait until it is completely written, then rerun.")
            by_name[name] = (mapped, index, header.data_start + info.begin)
    return by_name


def _dcp():
    """``dcp_io`` (imported on first use: it imports torch, which safetensors merges never need)."""
    from wsm_exp.merging import dcp_io

    return dcp_io


def _raise_nonfinite(name, reader: _Reader, indices, out_st_dtype: str) -> None:
    out_dtype = next(d for d, st in OUTPUT_ST_DTYPES.items() if st == out_st_dtype)
    st_dtype = reader.layout[name][0]
    for index in indices:
        checkpoint = reader.checkpoints[index]
        if not all(all_finite(reader.read(index, name, a, b, record=False), st_dtype) for a, b in reader.pieces(name)):
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
    unsupported = [st for st in input_dtypes if st.startswith("F") and st not in FLOAT_DTYPES]
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
        if is_side_file(item) and item not in newest.files:
            shutil.copy2(item, dest / item.name)


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


def _out_st_dtype(st_dtype: str, dtype: str | None) -> str:
    """safetensors dtype of a tensor in the output: float tensors take ``dtype`` when given."""
    if dtype is not None and st_dtype in FLOAT_DTYPES:
        return OUTPUT_ST_DTYPES[dtype]
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
