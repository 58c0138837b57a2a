"""Typed configs of the embedded study: the schemas of conf/model, conf/data, conf/train (``tiny`` = these defaults).

Each default's reason is its field comment, here only; the YAML presets list what differs.

Example:
    >>> TrainConfig().tokens_per_step
    2048
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """A tiny Llama: every checkpoint loads with from_pretrained and runs in lm-eval."""

    hidden_size: int = 64  # ~0.2M parameters: trains to near its noise floor in ~3 min on 2 cores
    intermediate_size: int = 172  # ≈ 8/3 · hidden, the Llama ratio
    num_hidden_layers: int = 2  # depth 2 keeps a training step under 0.1 s on CPU
    num_attention_heads: int = 2  # head dim 32
    num_key_value_heads: int = 2  # plain multi-head attention at this size
    tie_word_embeddings: bool = True  # halves the parameters spent on the vocabulary


@dataclass(frozen=True)
class DataConfig:
    """Corpora built from installed packages; see docs/study.md for sources and licenses."""

    vocab_size: int = 1024  # small byte-level BPE: keeps the embedding a small share of the model
    max_chars_general: int = 12_000_000  # stage-1 mix, a quarter each of BBE, WEB, stdlib, Wikipedia
    max_chars_anneal: int = 2_000_000  # annealing mix (Wikipedia leads), more than one branch needs
    heldout_percent: int = 5  # share of Wikipedia articles held out by title hash, for the loss task
    heldout_docs: int = 200  # held-out articles written for evaluation (seconds per model)


@dataclass(frozen=True)
class TrainConfig:
    """Stage 1 (warmup + constant LR), then branches: WSM (constant) and WSD (decays)."""

    seq_len: int = 256  # training context; the held-out loss task scores ~600-character pieces that fit in it
    batch_size: int = 8  # sequences per step: 2048 tokens per step
    peak_lr: float = 1e-2  # high constant LR, so decay and merging both have noise to remove
    warmup_steps: int = 30  # linear warmup at the start of stage 1
    switch_step: int = 1500  # T_switch: stage 1 ends (~3M tokens), branches switch to the annealing mix
    branch_steps: int = 256  # the WSD decay budget (~15% of training); at 128 the decay barely beat raw in seed 0
    save_every: int = 8  # Δ0: checkpoint spacing on every branch (32 WSM checkpoints)
    decay_shape: str = "1-sqrt"  # shape of fidelity and merge-then-decay decays; the paper's baseline
    min_lr_ratio: float = 0.0  # WSD decays to this fraction of peak_lr (0 like the paper's merges)
    weight_decay: float = 0.1  # AdamW, as in the paper
    beta1: float = 0.9  # AdamW β1, as in the paper
    beta2: float = 0.95  # AdamW β2, as in the paper
    grad_clip: float = 1.0  # as in the paper
    threads: int = 2  # torch CPU threads: the reference machine has 2 cores (conf/machine sets yours)
    device: str = "cpu"  # "cuda" trains on a GPU (other numerics, so the study gets another cache key)

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size
