"""The streaming engine: each input piece read once, accumulated into every output, handed to its sink.

Piece by piece (``reader.PIECE_ELEMENTS`` of a tensor at a time): ``acc = w_1·θ_1``, then
``acc = acc + w_i·θ_i`` in each plan's checkpoint order, a non-fused multiply-add with each
operation rounded in fp32 (or fp64), then narrowed to the input dtype (or the plan's dtype): the
arithmetic of ``arith``, in numpy, so a safetensors merge never imports torch. Each finished piece
goes to its output's *sink* on one writer thread while the next is computed; memory stays at a few
pieces per output whatever the model size or N.

A sink is anything with ``start(name)`` (a tensor begins), ``write(name, data)`` (its next piece,
flat, in order) and ``finish()`` (after the last tensor), all called in order on the writer thread:
``output.FolderOutput`` writes a model folder; an in-memory sink can plug in the same way.

Example:
    >>> from wsm_exp.merging.series import load_series, select_window                   # doctest: +SKIP
    >>> stream([(Accumulator(plan, inputs, layout), sink)], inputs, streams, sorted(layout))  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import queue
import threading
from contextlib import ExitStack

import numpy as np

from wsm_exp.merging.arith import ACCUMULATE_DTYPES, FLOAT_DTYPES, NUMPY_DTYPES, accumulate, all_finite, narrow, widen
from wsm_exp.merging.plan import MergePlan
from wsm_exp.merging.reader import TensorReader
from wsm_exp.merging.st_io import tensor_nbytes

OUTPUT_ST_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64"}
WRITE_SLOTS = 3  # pieces per output being computed or written at once (the writer thread trails by up to two)


class MergeError(ValueError):
    """Inputs or options that cannot be merged; nothing was written."""


def out_st_dtype(st_dtype: str, dtype: str | None) -> str:
    """safetensors dtype of a tensor in the output: float tensors take ``dtype`` when given.

    >>> out_st_dtype("F32", "bfloat16"), out_st_dtype("I64", "bfloat16"), out_st_dtype("BF16", None)
    ('BF16', 'I64', 'BF16')
    """
    if dtype is not None and st_dtype in FLOAT_DTYPES:
        return OUTPUT_ST_DTYPES[dtype]
    return st_dtype


def stream(outputs, inputs, streams, names, allow_nonfinite=False, progress=False, desc="merge") -> int:
    """Read tensors ``names`` (sorted) of every input once into every (``Accumulator``, sink) of ``outputs``;
    return the tensor bytes read. ``streams`` take the inputs' digests (see ``reader.TensorReader``)."""
    layout = outputs[0][0].layout
    pending = [collections.deque() for _ in outputs]  # calls in flight per output, oldest first
    with ExitStack() as stack, np.errstate(over="ignore", invalid="ignore"):  # non-finite sums are checked below
        pool = stack.enter_context(WriterThread())
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = sum(tensor_nbytes(*layout[n]) for n in names) * len(inputs)
            bar = stack.enter_context(tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False))
        reader = stack.enter_context(TensorReader(inputs, streams, layout, bar))
        for name in names:
            for (acc, sink), calls in zip(outputs, pending):
                acc.start(name)
                calls.append(pool.submit(sink.start, name))
            for start, stop in reader.pieces(name):
                for (acc, _), calls in zip(outputs, pending):
                    while len(calls) >= WRITE_SLOTS:  # the piece's buffers are free once the write before is done
                        calls.popleft().result()
                    acc.begin_piece(stop - start)
                for index in range(len(inputs)):
                    data = reader.read(index, name, start, stop)
                    for acc, _ in outputs:
                        acc.add(index, name, data)
                for (acc, sink), calls in zip(outputs, pending):
                    calls.append(pool.submit(sink.write, name, acc.end_piece(name, reader, allow_nonfinite)))
        for (_, sink), calls in zip(outputs, pending):
            calls.append(pool.submit(sink.finish))
        for calls in pending:
            while calls:
                calls.popleft().result()
    return reader.bytes_read


class Accumulator:
    """One plan's running weighted sum of the current piece (``WRITE_SLOTS`` buffers, reused for every piece)."""

    def __init__(self, plan: MergePlan, inputs, layout, input_dtypes=None):
        self.plan, self.layout = plan, layout
        self.position = {inputs.index(c): j for j, c in enumerate(plan.checkpoints)}  # pass index -> plan index
        input_dtypes = input_dtypes or sorted({st for st, _ in layout.values()})
        # fp64 inputs are never summed in a narrower type than they are stored in
        self.accumulated = "float64" if "F64" in input_dtypes else plan.accumulate
        self.dtype = ACCUMULATE_DTYPES[self.accumulated]
        self.scratch = Scratch(self.dtype)  # reused for every piece: no allocation (and page faults) per tensor
        self.slot = 0

    def start(self, name: str) -> None:
        self.in_st = self.layout[name][0]
        self.out_st = out_st_dtype(self.in_st, self.plan.dtype)
        self.summed = self.in_st in FLOAT_DTYPES

    def begin_piece(self, size: int) -> None:
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

    def end_piece(self, name: str, reader: TensorReader, allow_nonfinite: bool) -> np.ndarray:
        """The merged piece in the output dtype (valid until ``WRITE_SLOTS`` more pieces begin)."""
        if not self.summed:
            return self.first
        merged, size = self.acc, self.acc.size
        if NUMPY_DTYPES[self.out_st] != self.dtype:
            into = self.scratch.get(f"{self.out_st}{self.slot}", size, NUMPY_DTYPES[self.out_st])
            merged = narrow(self.acc, self.out_st, into,
                            self.scratch.get("work", size, np.dtype(np.uint32)) if self.out_st == "BF16" else None)
        # No pass over the inputs: NaN/Inf in any input (even with weight 0, as 0·Inf = NaN) reaches the
        # output; only a non-finite output triggers the scan that names the culprit.
        if not allow_nonfinite and not all_finite(merged, self.out_st):
            raise_nonfinite(name, reader, sorted(self.position), self.out_st)
        return merged


class Scratch:
    """Named flat buffers, grown on demand and reused: a piece's accumulator, products, narrowed output."""

    def __init__(self, dtype: np.dtype):
        self.dtype, self.buffers = dtype, {}

    def get(self, role: str, size: int, dtype: np.dtype | None = None) -> np.ndarray:
        buffer = self.buffers.get(role)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[role] = np.empty(max(size, 1), dtype or self.dtype)
        return buffer[:size]


class WriterThread:
    """One thread running submitted calls in order (the pass's writes); ``submit`` returns a handle whose
    ``result()`` waits for the call and re-raises its error. Leaving the ``with`` waits for every call."""

    def __init__(self):
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="wsm-merge-write", daemon=True)

    def __enter__(self) -> WriterThread:
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


def raise_nonfinite(name, reader: TensorReader, indices, out_st_dtype: str) -> None:
    """Raise the ``MergeError`` for a non-finite merged piece of ``name``: the input holding NaN/Inf, else
    an overflow of the weighted sum."""
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
