"""Merges ``MergePlan``s into model folders in one streaming pass: the public entry points.

``merge_plans`` checks the targets and inputs, opens one ``output.FolderOutput`` per plan, runs the
streaming engine (``engine.stream``) in this process or over disjoint output shards in ``workers``
processes (or a Slurm array's tasks), then writes each folder's index, side files and merge.json
and publishes it by rename. Every input byte is hashed on the way (inputs the identity cache knows
are not), so the plans' keys and the input identities come without a second read. An error in one
merge stops them all and publishes none; nothing half-written stays.

Example:
    >>> from wsm_exp.merging.series import load_series, select_window            # doctest: +SKIP
    >>> plan = build_plan(select_window(load_series("ckpts/run"), quantity=4), curve="1-sqrt")  # doctest: +SKIP
    >>> merge_plan(plan, "merged/1sqrt-4").identity                               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from wsm_exp.merging.arith import FLOAT_DTYPES
from wsm_exp.merging.ckpt_files import DCP_METADATA, Checkpoint
from wsm_exp.merging.engine import Accumulator, MergeError, stream
from wsm_exp.merging.identity import StreamingIdentity
from wsm_exp.merging.output import FolderOutput, MergeResult, check_target
from wsm_exp.merging.plan import MergePlan, build_plan
from wsm_exp.merging.series import validate_checkpoints
from wsm_exp.merging.st_io import tensor_nbytes

DEFAULT_SHARD_BYTES = 2 * 1024**3  # 2 GiB: few shards for 7B-class models, bounded memory
log = logging.getLogger(__name__)


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
    ``overwrite`` replaces an existing output folder only when it is empty or a previous merge output
    holding nothing its merge.json does not list (``output.check_target``).

    ``workers`` > 1 merges disjoint sets of output shards in that many processes (each reads only
    its shards' tensors); the index, side files and merge.json are written once, at the end, and
    the result is bit-identical to one process. A merge with one output shard (or DCP output, or
    outputs whose shards differ) runs in one process. ``executor`` (anything with ``map(fn, *iterables)``)
    runs those workers instead of local processes: the sweep's Slurm array (wsm_exp.sweep.stage.merge_array).
    ``sinks`` (one per plan, ``memory_sink.MemorySink``) take each output's shards in place of its files,
    in this process; the folder then holds only the side files and merge.json (``memory_sink.merge_in_memory``).
    """
    started = time.perf_counter()
    out_dirs = [Path(o) for o in out_dirs]
    if len(plans) != len(out_dirs) or len({o.resolve() for o in out_dirs}) != len(out_dirs):
        raise MergeError(f"{len(plans)} merges for {len(out_dirs)} output folders: give each merge its own folder.")
    inputs = _union(plans)
    for plan, out_dir in zip(plans, out_dirs):
        check_target(plan.checkpoints, out_dir, overwrite)
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
    outputs: list[FolderOutput] = []
    try:
        for plan, out_dir in zip(plans, out_dirs):
            outputs.append(FolderOutput(plan, out_dir, layout, shard_size_bytes, as_dcp, side_files))
        for output, sink in zip(outputs, sinks or ()):
            output.open_writer = sink.open
        accumulators = [Accumulator(plan, inputs, layout, input_dtypes) for plan in plans]
        streams = [StreamingIdentity(c) for c in inputs]
        groups = _worker_groups(outputs, 1 if sinks is not None else workers)
        if groups is None and workers > 1:
            log.info("merging in one process, not %d: the outputs have one shard each or are DCP (a smaller "
                     "shard size gives more shards to split)", workers)
        if groups is None:
            desc = f"merge {out_dirs[0].name}" + (f" (+{len(plans) - 1})" if len(plans) > 1 else "")
            bytes_read = stream(list(zip(accumulators, outputs)), inputs, streams, sorted(layout), allow_nonfinite,
                                progress, desc)
        else:
            bytes_read = _stream_in_workers(outputs, inputs, streams, groups, allow_nonfinite, executor)
        identities = [s.identity() for s in streams]
        notes = provenance if isinstance(provenance, (list, tuple)) else [provenance] * len(outputs)
        results = [output.close([identities[i] for i in sorted(acc.position)], input_dtypes, acc.accumulated, note)
                   for output, acc, note in zip(outputs, accumulators, notes)]
        for output in outputs:
            output.publish(overwrite)
    except BaseException:
        for output in outputs:
            output.discard()
        raise
    seconds = time.perf_counter() - started
    return [replace(r, bytes_read=bytes_read, seconds=seconds) for r in results]


def _worker_groups(outputs: list[FolderOutput], workers: int) -> list[list[str]] | None:
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
    """``engine.stream`` over disjoint shard groups in forked processes (or the tasks of ``executor``, anything with
    ``map(fn, *iterables)``, e.g. a Slurm array); their digests come back to this one."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    wanted = [set(s.trees) for s in streams]
    jobs = [([o.plan for o in outputs], [o.out_dir for o in outputs], [o.tmp for o in outputs], inputs,
             outputs[0].layout, outputs[0].shard_size, names, wanted, allow_nonfinite)
            for names in groups]
    pool = (contextlib.nullcontext(executor) if executor is not None else
            ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("fork")))
    try:
        with pool as workers:
            done = list(workers.map(_worker, *zip(*jobs)))
    except BrokenProcessPool as err:
        raise MergeError(f"A merge worker process ended abruptly ({err}): killed, out of memory, or crashed. Nothing "
                         "was published; rerun (with fewer --workers if memory is short).") from None
    bytes_read = 0
    for shard_digests, tensor_digests, read in done:
        bytes_read += read
        for output, digests in zip(outputs, shard_digests):
            output.digests.update(digests)
        for stream, digests in zip(streams, tensor_digests):
            for (file_index, name), digest in digests.items():
                stream.trees[file_index].add_digest(name, digest)
    return bytes_read


def _worker(plans, out_dirs, tmps, inputs, layout, shard_size, names, wanted, allow_nonfinite):
    """One worker of ``_stream_in_workers``: writes its shards; returns their digests and the input tensors'."""
    outputs = [FolderOutput(p, o, layout, shard_size, tmp=t) for p, o, t in zip(plans, out_dirs, tmps)]
    recorders = [_DigestRecorder(w) for w in wanted]
    read = stream([(Accumulator(p, inputs, layout), o) for p, o in zip(plans, outputs)], inputs, recorders, names,
                  allow_nonfinite)
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


def _check_float_dtypes(layout, input_dtypes, first: Checkpoint) -> None:
    unsupported = [st for st in input_dtypes if st.startswith("F") and st not in FLOAT_DTYPES]
    if unsupported:
        name = next(n for n, (st, _) in layout.items() if st in unsupported)
        raise MergeError(f"Tensor {name!r} of {first.path} is {unsupported[0]}; only F64, F32, BF16 and F16 "
                         "float tensors can be averaged. Dequantise the checkpoints (e.g. to bfloat16) first.")


__all__ = ["MergeError", "MergeResult", "merge_checkpoints", "merge_plan", "merge_plans"]
