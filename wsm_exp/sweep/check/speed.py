"""A plan-time probe of this machine's present speed, for estimates with no past timings to go on.

Two measurements, each the mean of repeats over a fraction of a second (a shared, noisy machine is
the case it is for):

- ``unit``: the wall seconds of a fixed piece of pure-Python work (``python_work``). The fixed costs of
  a command (start, imports, lm-eval building a task, a saved checkpoint) are priors counted in these
  units (wsm_exp.sweep.check.estimate), so they stretch with the machine's present load.
- ``probe_model``: the planned model on the planned device, on random weights of its shape: an
  evaluation forward pass's latency and seconds per token, and a training step at the study's batch
  shape; measured with 1 and 2 layers and extrapolated linearly to the full depth, so a probe of a
  32-layer model builds 2 of its layers.

Example:
    >>> 0 < measure_unit(budget=0.05) < 5
    True
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass

REPEATS = 3  # timed repeats per measurement at least (after one untimed warm-up)
MAX_REPEATS = 40  # a cheap measurement stops here before its budget is spent
SETTLED = 0.1  # a mean known to ±10% (one standard error) ends the window at its budget; else it runs on (2×)
PROBE_BUDGET_SECONDS = 2.0  # the model probe's window: every measurement taken in turn until it is spent
UNIT_BUDGET_SECONDS = 0.3  # the Python unit's window: ~12 pieces of work on the reference machine
PROBE_FLOPS = 2e9  # a CPU probe pass does about this much work (~0.1 s on 2 cores): big models get few tokens
MAX_PROBE_PARAMETERS = 1_500_000_000  # a 2-layer probe model larger than this (a huge vocabulary) is not built


def python_work() -> int:
    """A fixed piece of pure-Python work (~25 ms on the reference machine): dicts, strings, lists, with
    the garbage collector paused (its passes grow with whatever else the process has imported).

    >>> python_work()
    280000
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        table = {}
        for i in range(40_000):
            key = f"k{i:05d}"
            table[key] = [key.upper(), i]
        return sum(len(value[0]) + 1 for value in table.values())
    finally:
        if paused:
            gc.enable()


def measure_unit(budget: float = UNIT_BUDGET_SECONDS) -> float:
    """Mean wall seconds of ``python_work`` on this machine now, over ``budget`` seconds of repeats."""
    return _round_robin({"unit": python_work}, budget)["unit"]


@dataclass(frozen=True)
class ModelProbe:
    """The planned model's measured speed; ``spent``: the probe's own wall seconds."""

    latency: float  # seconds per evaluation forward pass, whatever its size (launch, threads, Python)
    per_token: float  # seconds per further token of an evaluation forward pass
    train_step: float  # seconds per training step at the study's batch shape (0: not probed)
    spent: float
    unit: float = 0.0  # seconds of python_work, timed in turn with the model in the same window (0: not)

    def forward_seconds(self, calls: float, tokens: float) -> float:
        """Seconds of ``calls`` forward passes reading ``tokens`` tokens in all.

        >>> ModelProbe(latency=0.01, per_token=0.001, train_step=0.0, spent=1.0).forward_seconds(10, 500)
        0.6
        """
        return calls * self.latency + tokens * self.per_token


def probe_model(config, *, device: str, dtype: str, eval_batch: int = 16, train_shape: tuple[int, int] | None = None,
                threads: int | None = None, budget: float = PROBE_BUDGET_SECONDS) -> ModelProbe | None:
    """The speed of a causal LM of ``config``'s shape (a Hugging Face config) on ``device``, or None when a
    2-layer copy would be larger than ``MAX_PROBE_PARAMETERS`` or cannot be built here.

    Evaluation: a forward pass of 1 row of 16 tokens and one of ``eval_batch`` rows of 128 tokens (on a CPU
    cut to ~``PROBE_FLOPS`` of work, at least one row) give its latency and its seconds per token. Training
    (fp32, as the study trains, with ``threads`` torch threads): a step at ``train_shape`` = (rows, sequence
    length), on a CPU cut the same way and scaled back by tokens (None: not probed, ``train_step`` is 0).
    A small model is timed at its real batch (its cost is not proportional to tokens), a large one on a
    few rows (where it is).
    Every measurement, ``python_work`` included (``unit``), is taken in turn, round after round, for
    ``budget`` seconds: each mean covers the whole window of the machine's load, not a moment of it."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    layers = int(config.num_hidden_layers)
    vocab, hidden = int(config.vocab_size), int(config.hidden_size)
    inner = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    size = 2 * (4 * hidden * hidden + 3 * hidden * inner) + 2 * vocab * hidden  # 2 layers, embedding and head
    if size > MAX_PROBE_PARAMETERS:
        return None
    tokens = math.inf if device.startswith("cuda") else PROBE_FLOPS / (2 * size)  # forward: 2 FLOPs per weight
    length = min(128, int(getattr(config, "max_position_embeddings", 128) or 128))
    generator = torch.Generator().manual_seed(0)
    small = torch.randint(0, vocab, (1, 16), generator=generator).to(device)
    large = torch.randint(0, vocab, (max(1, min(eval_batch, int(tokens // length))), length),
                          generator=generator).to(device)
    work, scale = {("unit", 0): python_work}, {}
    for depth in sorted({1, min(2, layers)}):
        reduced = copy.deepcopy(config)
        reduced.num_hidden_layers = depth
        try:
            model = AutoModelForCausalLM.from_config(reduced, dtype=getattr(torch, dtype)).to(device).eval()
            trained = AutoModelForCausalLM.from_config(reduced, dtype=torch.float32).to(device).train() \
                if train_shape else None
        except (RuntimeError, ValueError, OSError, AssertionError):  # torch without CUDA asserts
            return None
        for name, ids in (("small", small), ("large", large)):
            work[name, depth] = lambda model=model, ids=ids: _forward(model, ids, device)
        if trained is not None:
            rows, seq_len = train_shape
            fit = max(1, min(rows, int(tokens / 3 // seq_len)))  # a step: forward + backward, ~3 passes
            batch = torch.randint(0, vocab, (fit, seq_len), generator=generator)
            work["train", depth] = _train_step(trained, batch.to(device), device, threads)
            scale["train", depth] = rows * seq_len / batch.numel()
    seconds = _round_robin(work, budget)
    timed = {name: {d: seconds[n, d] * scale.get((n, d), 1.0) for n, d in seconds if n == name}
             for name in ("small", "large", "train")}
    short, long = extrapolate(timed["small"], layers), extrapolate(timed["large"], layers)
    per_token = max(long - short, 0.0) / (large.numel() - small.numel())
    return ModelProbe(latency=max(short - small.numel() * per_token, 0.0), per_token=per_token,
                      train_step=extrapolate(timed["train"], layers) if train_shape else 0.0,
                      spent=round(time.perf_counter() - started, 2), unit=seconds["unit", 0])


def _round_robin(work: dict, budget: float) -> dict:
    """Mean wall seconds of each piece of ``work``, timed in turn (after one untimed warm-up each: first-call
    costs are not the steady rate) for ``budget`` seconds, each at least ``REPEATS`` and at most ``MAX_REPEATS``
    times, and on for up to 2 × ``budget`` while a mean is not known to ``SETTLED`` (a loaded machine). The mean, not the median: a run's duration is the sum of its steps, stalls included, and on a
    shared machine the median of short pieces picks the moments another process slept."""
    for run in work.values():
        run()
    seconds: dict = {key: [] for key in work}
    started = time.perf_counter()
    while True:
        for key, run in work.items():
            begun = time.perf_counter()
            run()
            seconds[key].append(time.perf_counter() - begun)
        rounds, elapsed = len(seconds[key]), time.perf_counter() - started
        settled = all(_relative_error(values) <= SETTLED for values in seconds.values())
        if rounds >= MAX_REPEATS or (rounds >= REPEATS and elapsed >= budget and (settled or elapsed >= 2 * budget)):
            return {key: statistics.fmean(values) for key, values in seconds.items()}


def _relative_error(values: list[float]) -> float:
    """Standard error of the mean over the mean.

    >>> round(_relative_error([1.0, 3.0]), 2), _relative_error([2.0])
    (0.5, inf)
    """
    if len(values) < 2:
        return math.inf
    return statistics.stdev(values) / math.sqrt(len(values)) / max(statistics.fmean(values), 1e-12)


def _forward(model, ids, device: str) -> None:
    import torch

    with torch.no_grad():
        model(input_ids=ids)
    _sync(device)


def _train_step(model, batch, device: str, threads: int | None):
    """A training step (forward, backward, clipping, AdamW) on ``batch``, with ``threads`` torch threads
    (the study trains with train.threads; evaluation keeps torch's own)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        before = torch.get_num_threads()
        if threads and threads != before:
            torch.set_num_threads(int(threads))
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()
        _sync(device)
        if threads and threads != before:
            torch.set_num_threads(before)

    return step


def extrapolate(by_depth: dict[int, float], layers: int) -> float:
    """Seconds at ``layers`` layers from seconds at 1 and 2: the 1-layer cost plus one layer's cost per
    further layer (a layer never counted as costing less than nothing).

    >>> extrapolate({1: 3.0, 2: 4.0}, 10), extrapolate({1: 3.0, 2: 2.5}, 10), extrapolate({1: 3.0}, 1)
    (12.0, 3.0, 3.0)
    """
    one = by_depth[1]
    step = max(by_depth.get(2, one) - one, 0.0)
    return one + (layers - 1) * step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
