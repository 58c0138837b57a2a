"""The training loop of the embedded study: token-counted AdamW steps with resumable checkpoints.

A segment trains global steps ``[start, end)`` from a model and optimizer state, with the LR a
pure function of the step and the batch a pure function of (mix, position, seed): a run killed
mid-way resumes from its newest checkpoint and ends with exactly the weights of an uninterrupted
run. Each checkpoint ``step_<n>/`` is a Hugging Face folder plus ``trainer_state.pt`` (optimizer
state), written to a temp folder and renamed.

Example:
    >>> batch_indices(position=1, batch_size=2, n_sequences=5, seed=0).tolist()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from wsm_exp.atomic import temp_path
from wsm_exp.study.config import ModelConfig, TrainConfig
from wsm_exp.study.progress import ProgressLine

STATE_FILE = "trainer_state.pt"
Logger = Callable[[dict, int], None]


def build_model(model_cfg: ModelConfig, train_cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase,
                seed: int) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama, seeded."""
    torch.manual_seed(seed)
    # lm-eval refuses an answer longer than max_position_embeddings tokens; 1024 fits every
    # benchmark answer (a few PIQA/HellaSwag endings exceed 256 tokens) while training uses seq_len
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=max(train_cfg.seq_len, 1024),
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **asdict(model_cfg))
    return LlamaForCausalLM(config)


def training_device(cfg: TrainConfig) -> torch.device:
    """``cfg.device`` as a torch device, refused with the fix when it does not exist here."""
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={cfg.device!r} but torch sees no CUDA GPU on this machine "
                           f"(torch {torch.__version__}). Use train.device=cpu, or install a CUDA build of torch.")
    return device


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (β 0.9/0.95, weight decay 0.1 on matrices only, as usual for LMs)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=cfg.peak_lr, betas=(cfg.beta1, cfg.beta2))


@lru_cache(maxsize=8)
def _permutation(n_sequences: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n_sequences)


def batch_indices(position: int, batch_size: int, n_sequences: int, seed: int) -> np.ndarray:
    """Which sequences form batch number ``position`` of a mix (a seeded order, wrapping by epoch)."""
    order = _permutation(n_sequences, seed)
    return order[(position * batch_size + np.arange(batch_size)) % n_sequences]


def get_batch(tokens: np.ndarray, position: int, cfg: TrainConfig, seed: int) -> torch.Tensor:
    n_sequences = len(tokens) // cfg.seq_len
    rows = [tokens[i * cfg.seq_len:(i + 1) * cfg.seq_len] for i in batch_indices(position, cfg.batch_size,
                                                                                   n_sequences, seed)]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def newest_checkpoint(folder: Path, up_to: int) -> tuple[int, Path] | None:
    """The newest resumable checkpoint (with optimizer state) at or before step ``up_to``."""
    found = [(int(p.name[5:]), p) for p in folder.glob("step_*") if (p / STATE_FILE).is_file()]
    found = [f for f in found if f[0] <= up_to]
    return max(found) if found else None


def load_state(model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, checkpoint: Path, *,
               optimizer_from: Path | None = None) -> None:
    """Weights of a saved checkpoint and optimizer state of it, or of ``optimizer_from`` (in place)."""
    from safetensors.torch import load_file

    weights = load_file(checkpoint / "model.safetensors")
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()  # saved once, as the embedding
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights) - tied), sorted(set(weights) - expected)
    if missing or unexpected:
        raise RuntimeError(
            f"{checkpoint / 'model.safetensors'} does not match the study's model: missing tensor(s) "
            f"{missing or 'none'}, unexpected tensor(s) {unexpected or 'none'}. The checkpoint was written by "
            "another model config or is damaged; delete the branch folder to retrain it."
        )
    model.load_state_dict(weights, strict=not tied)
    if tied:
        model.tie_weights()
    state = torch.load((optimizer_from or checkpoint) / STATE_FILE, weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])


def save_checkpoint(model, optimizer, tokenizer, folder: Path, step: int, lr: float) -> Path:
    """Publish ``folder/step_<step>`` atomically (HF files + tokenizer + optimizer state)."""
    final = folder / f"step_{step}"
    tmp = temp_path(final)  # also removes those left by a run killed while saving this step
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "lr": lr}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def train_segment(
    model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, tokenizer, tokens: np.ndarray, *,
    cfg: TrainConfig, seed: int, start: int, end: int, data_offset: int, lr_at: Callable[[int], float],
    folder: Path, save_every: int, logger: Logger | None = None, desc: str = "train",
    progress_every_s: float = 60.0,
) -> dict[int, float]:
    """Train global steps [start, end), saving every ``save_every`` steps after ``start`` and at ``end``.

    Resumes from the newest checkpoint in ``folder`` inside (start, end]. Returns {step: lr}. Progress goes to a
    tqdm bar (stderr) and, at most every ``progress_every_s`` seconds, to a line on stdout.
    """
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    resume = newest_checkpoint(folder, end)
    step = start
    if resume and resume[0] > start:
        load_state(model, optimizer, resume[1])
        step = resume[0]
    lrs = {s: lr_at(s) for s in range(start, end)}
    device = next(model.parameters()).device
    model.train()
    bar = tqdm(total=end - start, initial=step - start, desc=desc, unit="step", leave=False, mininterval=1.0)
    started, tokens_seen = time.perf_counter(), 0
    line_start = step
    line = ProgressLine(desc, total=end - step, every_s=progress_every_s)
    while step < end:
        lr = lrs[step]
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = get_batch(tokens, data_offset + step - start, cfg, seed).to(device)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        tokens_seen += batch.numel()
        rate = tokens_seen / max(time.perf_counter() - started, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", tok_s=f"{rate:,.0f}")
        line.update(step=step, done=step - line_start, loss=loss.item(), tokens_per_s=rate)
        if logger is not None:
            logger({f"{desc}/loss": loss.item(), f"{desc}/lr": lr, f"{desc}/tokens_per_s": rate}, step)
        if (step - start) % save_every == 0 or step == end:
            save_checkpoint(model, optimizer, tokenizer, folder, step, lr)
    bar.close()
    return lrs
