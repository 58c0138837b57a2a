"""Streaming weighted merge of safetensors checkpoints, published atomically with provenance.

Tensor by tensor from memory-mapped files: accumulate ``Σ w_i θ_i`` in fp32 (or fp64) as
``acc.addcmul_(θ_i, w_i)`` in checkpoint order (the arithmetic of mergekit's ``linear`` with
``normalize: false``, so both give bit-identical results for the same weights), write the
result in the input dtype (or ``dtype``), shard past ``shard_size_bytes``. Memory stays near one
output shard plus a few tensors, whatever N is. Everything is written into a hidden temporary
folder beside ``out_dir`` and renamed into place at the end, so a crash or a full disk never
leaves a partial model at ``out_dir``.

Example:
    >>> from wsm_exp.merging.series import load_series, select_window          # doctest: +SKIP
    >>> w = select_window(load_series("ckpts/run"), quantity=4)                 # doctest: +SKIP
    >>> merge_checkpoints(w.checkpoints, [0.25] * 4, "merged/mean4").key        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from wsm_exp.atomic import temp_path
from wsm_exp.merging.series import INDEX_FILE, SINGLE_FILE, Checkpoint, SeriesError, checkpoint_identity, validate_checkpoints
from wsm_exp.merging.writer import TORCH_TO_ST, SafetensorsWriter, tensor_nbytes

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
SKIPPED_FILES = ("trainer_state", "optimizer", "scheduler", "rng_state", "training_args", "merge.json")
DEFAULT_SHARD_BYTES = 2 * 1024**3  # 2 GiB: few shards for 7B-class models, bounded memory


class MergeError(ValueError):
    """Inputs or options that cannot be merged; nothing was written."""


@dataclass(frozen=True)
class MergeResult:
    """Where the merged model is, its content key, and what it cost."""

    out_dir: Path
    key: str
    bytes_read: int
    seconds: float
    shards: int


def merge_key(checkpoints: Sequence[Checkpoint], weights: Sequence[float], dtype: str | None = None,
              accumulate: str = "float32") -> str:
    """Content key of a merge: checkpoint identities + weights + output dtype + accumulation.

    Two requests with the same key produce the same tensors, so callers can reuse the folder.
    """
    payload = {
        "inputs": [checkpoint_identity(c) for c in checkpoints],
        "weights": [repr(float(w)) for w in weights],
        "dtype": dtype, "accumulate": accumulate,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def merge_checkpoints(
    checkpoints: Sequence[Checkpoint], weights: Sequence[float], out_dir: str | Path, *,
    dtype: str | None = None, accumulate: str = "float32", provenance: dict[str, Any] | None = None,
    overwrite: bool = False, shard_size_bytes: int = DEFAULT_SHARD_BYTES, allow_nonfinite: bool = False,
    progress: bool = True,
) -> MergeResult:
    """Write ``Σ weights[i] · checkpoints[i]`` to ``out_dir`` (weights oldest first, as given)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    _check_request(checkpoints, weights, out_dir, dtype, accumulate, overwrite)
    layout = validate_checkpoints(checkpoints)
    input_dtypes = sorted({st for st, _ in layout.values()})
    unsupported = [st for st in input_dtypes if st.startswith("F") and st not in SAFETENSORS_DTYPES]
    if unsupported:
        name = next(n for n, (st, _) in layout.items() if st in unsupported)
        raise MergeError(f"Tensor {name!r} of {checkpoints[0].path} is {unsupported[0]}; only F64, F32, BF16 and F16 "
                         "float tensors can be averaged. Dequantise the checkpoints (e.g. to bfloat16) first.")
    # fp64 inputs are never summed in a narrower type than they are stored in
    accumulated = "float64" if "F64" in input_dtypes else accumulate
    acc_dtype = DTYPES[accumulated]
    key = merge_key(checkpoints, weights, dtype, accumulate)
    record = {
        **(provenance or {}), "key": key,
        "inputs": [{"step": c.step, "path": str(c.path), "identity": checkpoint_identity(c)} for c in checkpoints],
        "steps": [c.step for c in checkpoints], "weights": [float(w) for w in weights],
        "input_dtypes": input_dtypes, "dtype": dtype or "input", "accumulate": accumulated,
        "package_version": _version(),
    }
    plan = _plan_shards(layout, dtype, shard_size_bytes)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out_dir)  # also removes those left by a killed merge of the same target
    tmp.mkdir()
    bytes_read = 0
    try:
        with ExitStack() as stack:
            handles = [_open(stack, c) for c in checkpoints]
            total = sum(tensor_nbytes(*layout[n]) for n in layout) * len(checkpoints)
            bar = stack.enter_context(tqdm(total=total, unit="B", unit_scale=True, desc=f"merge {out_dir.name}",
                                           disable=not progress, leave=False))
            metadata = {"format": "pt", "wsm_merge": json.dumps(record, sort_keys=True)}
            # one accumulator reused for every tensor: no allocation (and page faults) per tensor
            largest = max((_numel(shape) for st, shape in layout.values() if st in SAFETENSORS_DTYPES), default=0)
            scratch = torch.empty(largest, dtype=acc_dtype)
            for file_name, names in plan:
                entries = [(n, _out_st_dtype(layout[n][0], dtype), layout[n][1]) for n in names]
                with SafetensorsWriter(tmp / file_name, entries, metadata) as out:
                    for name in names:
                        out.write(name, _merge_tensor(name, checkpoints, handles, weights, scratch, dtype,
                                                      allow_nonfinite))
                        size = tensor_nbytes(*layout[name]) * len(checkpoints)
                        bytes_read += size
                        bar.update(size)
        if len(plan) > 1:
            weight_map = {n: f for f, names in plan for n in names}
            total_size = sum(tensor_nbytes(_out_st_dtype(layout[n][0], dtype), layout[n][1]) for n in layout)
            (tmp / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total_size},
                                                      "weight_map": weight_map}, indent=1))
        _copy_side_files(checkpoints[-1], tmp)
        (tmp / "merge.json").write_text(json.dumps(record, indent=1))
        _publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MergeResult(out_dir, key, bytes_read, time.perf_counter() - started, len(plan))


def _merge_tensor(name, checkpoints, handles, weights, scratch, dtype, allow_nonfinite) -> torch.Tensor:
    tensors = (h[name].get_tensor(name) for h in handles)
    first = next(tensors)
    if not first.is_floating_point():
        for checkpoint, other in zip(checkpoints[1:], tensors):
            if not torch.equal(first, other):
                raise MergeError(
                    f"Non-float tensor {name!r} differs between {checkpoints[0].path} and {checkpoint.path}; "
                    "integer buffers cannot be averaged. Merge checkpoints whose integer tensors agree."
                )
        return first.clone()
    out_dtype = first.dtype if dtype is None else DTYPES[dtype]
    acc = scratch[:first.numel()].view(first.shape).zero_()
    for weight, tensor in zip(weights, itertools.chain([first], tensors)):  # one input tensor at a time
        acc.addcmul_(tensor.to(acc.dtype), torch.tensor(weight, dtype=acc.dtype))
    merged = acc.to(out_dtype)  # may alias the scratch buffer: the caller writes it before the next tensor
    # No pass over the inputs: NaN/Inf in any input (even with weight 0, as 0·Inf = NaN) reaches the
    # output and then its total; only a non-finite total triggers the scan that names the culprit.
    if not allow_nonfinite and not torch.isfinite(merged.sum()) and not torch.isfinite(merged).all():
        _raise_nonfinite(name, checkpoints, handles, out_dtype)
    return merged


def _raise_nonfinite(name, checkpoints, handles, out_dtype) -> None:
    for checkpoint, handle in zip(checkpoints, handles):
        if not torch.isfinite(handle[name].get_tensor(name)).all():
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


def _open(stack: ExitStack, checkpoint: Checkpoint) -> dict[str, Any]:
    """tensor name -> open safetensors handle, over the checkpoint's (possibly sharded) files."""
    by_name = {}
    for file in checkpoint.files:
        handle = stack.enter_context(safe_open(str(file), framework="pt"))
        for name in handle.keys():
            by_name[name] = handle
    return by_name


def _check_request(checkpoints, weights, out_dir: Path, dtype, accumulate, overwrite) -> None:
    if not checkpoints:
        raise MergeError("No checkpoints to merge: select a window with at least one checkpoint.")
    if len(weights) != len(checkpoints):
        raise MergeError(f"{len(weights)} weights for {len(checkpoints)} checkpoints: give one weight per checkpoint.")
    if dtype is not None and dtype not in ("float32", "bfloat16", "float16"):
        raise MergeError(f"Output dtype {dtype!r} is not supported; use float32, bfloat16 or float16.")
    if accumulate not in ("float32", "float64"):
        raise MergeError(f"Accumulation dtype {accumulate!r} is not supported; use float32 or float64.")
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


def _copy_side_files(newest: Checkpoint, dest: Path) -> None:
    """config, generation config and tokenizer files of the newest checkpoint (so from_pretrained works)."""
    if not newest.path.is_dir():
        return
    for item in newest.path.iterdir():
        if (item.is_file() and not item.name.endswith(".safetensors") and item.name != INDEX_FILE
                and not item.name.startswith(SKIPPED_FILES)):
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


__all__ = ["MergeError", "MergeResult", "merge_checkpoints", "merge_key", "SeriesError"]
