"""What a plan measures of this machine before estimating: the Python factor always, the model only when cold.

The factor (wsm_exp.sweep.check.speed.measure_unit, a fraction of a second) scales every fixed prior.
The planned model is probed (speed.probe_model: its forward pass on the evaluation device, a training
step of the study on its device) only when some task or the training has no record of a model of
its size on that device (wsm_exp.sweep.check.estimate.usable): a warm plan stays cheap, and a cold one
says that it probed and what it found.

Example:
    >>> describe(Machine(factor=1.42))
    'Python work 1.42× the reference machine'
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from wsm_exp.sweep.check.estimate import REFERENCE_UNIT, Machine
from wsm_exp.sweep.check.speed import measure_unit, probe_model


def measure(source, eval_cfg, *, probe_eval: bool, probe_train: bool) -> tuple[Machine, str | None]:
    """This machine now, and why the model was not probed (None: probed, or not needed)."""
    if not (probe_eval or probe_train):
        return Machine(factor=measure_unit() / REFERENCE_UNIT), None
    config = hf_config(source)
    probe = None if config is None else _probe(config, source, eval_cfg, probe_train)
    if probe is None:
        why = "no Hugging Face config of the model found" if config is None else \
            "the model is too large to probe here (or cannot be built)"
        return Machine(factor=measure_unit() / REFERENCE_UNIT), why
    return Machine(factor=probe.unit / REFERENCE_UNIT, probe=probe), None  # the unit over the probe's longer window


def _probe(config, source, eval_cfg, probe_train: bool):
    """The model probed on the evaluation device, and its training step on the study's device (None: not built)."""
    train = source.train_cfg if source.trains_branches and probe_train else None
    shape = (int(train.batch_size), int(train.seq_len)) if train else None
    same_device = train is None or str(train.device) == str(eval_cfg.device)
    probe = probe_model(config, device=str(eval_cfg.device), dtype=str(eval_cfg.dtype),
                        eval_batch=int(eval_cfg.batch_size), train_shape=shape if same_device else None,
                        threads=int(train.threads) if train else None)
    if probe is not None and not same_device:
        trained = probe_model(config, device=str(train.device), dtype="float32", train_shape=shape,
                              threads=int(train.threads))
        if trained is not None:
            probe = replace(probe, train_step=trained.train_step, spent=probe.spent + trained.spent)
    return probe


def hf_config(source):
    """The Hugging Face config of the models a sweep evaluates: the study's, or the series' own ``config.json``."""
    from transformers import AutoConfig, LlamaConfig

    if source.trains_branches:
        seq_len = int(source.train_cfg.seq_len)
        return LlamaConfig(vocab_size=int(source.data_cfg.vocab_size), max_position_embeddings=max(seq_len, 1024),
                           **asdict(source.model_cfg))
    folder = source.hf_config or source.series_of("wsm").checkpoints[-1].path
    if not (Path(folder) / "config.json").is_file():
        return None
    try:
        return AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError):
        return None


def describe(machine: Machine, why_not: str | None = None) -> str:
    """The plan's line on what was measured."""
    text = f"Python work {machine.factor:.2f}× the reference machine"
    probe = machine.probe
    if probe is not None:
        text += (f"; this model's forward pass {1000 * probe.latency:.1f} ms + {1e6 * probe.per_token:.1f} µs per token"
                 + (f", a training step {probe.train_step:.3f} s" if probe.train_step else "")
                 + f" (probed on 1 and 2 of its layers, random weights, {probe.spent:.1f} s)")
    elif why_not:
        text += f"; the model not probed: {why_not} (its compute is left out of the estimate)"
    return text
