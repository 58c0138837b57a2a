"""Supervised fine-tuning of a base model on instruction items, the loss on the responses only.

Each item becomes ``prompt`` tokens, then `` answer`` tokens and the end-of-text token; labels are
-100 on the prompt (and on padding), so only the response is learned. The same SFT (items, order,
steps, LR schedule, seed) runs on every base of a comparison: the order of epoch ``e`` is a seeded
permutation of the items (``trainer.batch_indices``), the LR a pure function of the global step.
After every epoch the model is published atomically as ``<out>/epoch_<e>/`` (Hugging Face folder,
tokenizer, AdamW state); a killed run resumes from its newest epoch to the same weights.

Example:
    >>> sft_lr(0, SFTConfig(), total_steps=100) > 0, sft_lr(99, SFTConfig(), total_steps=100)
    (True, 0.0)
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from wsm_exp.atomic import temp_path
from wsm_exp.study.schedules import wsd
from wsm_exp.study.sft_data import Item
from wsm_exp.study.trainer import STATE_FILE, batch_indices, build_optimizer, load_state, training_device

EPOCH = re.compile(r"^epoch_(\d+)$")


@dataclass(frozen=True)
class SFTConfig:
    """The fine-tuning recipe shared by both bases (mirrored by conf/sft/*.yaml)."""

    epochs: int = 5  # the paper's SFT: 5 epochs, the best one reported
    items_per_skill: int = 1500  # 4,500 items per epoch (140 steps): both bases within the budget
    batch_size: int = 32  # items per step (~700 tokens: prompts are short)
    peak_lr: float = 1e-2  # the pre-training LR: copy at 98% after 5 epochs (5e-3: 5% after 3)
    warmup_steps: int = 20  # linear warmup from the fresh optimizer
    decay_shape: str = "linear"  # LR decays over all SFT steps to zero (schedules.SHAPES)
    weight_decay: float = 0.1  # AdamW, as in pre-training
    beta1: float = 0.9  # AdamW, as in pre-training
    beta2: float = 0.95  # AdamW, as in pre-training
    grad_clip: float = 1.0  # as in pre-training
    threads: int = 2  # torch CPU threads; the machine has 2 cores
    device: str = "cpu"  # "cuda" on a GPU machine

    def steps_per_epoch(self, n_items: int) -> int:
        return max(n_items // self.batch_size, 1)


def sft_lr(step: int, cfg: SFTConfig, total_steps: int) -> float:
    """Warmup, then a ``decay_shape`` decay to zero over the remaining steps."""
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    return wsd(step, peak=cfg.peak_lr, warmup=cfg.warmup_steps, decay_start=cfg.warmup_steps,
               decay_steps=decay_steps, shape=cfg.decay_shape)


def encode(items: list[Item], tokenizer) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per item: the prompt's labels are -100, the response's are its tokens.

    The prompt and the response are tokenized apart, so the boundary is the one generation sees.
    """
    prompts = tokenizer([i.prompt for i in items], add_special_tokens=False)["input_ids"]
    answers = tokenizer([" " + i.answer for i in items], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(p + a + [eos], [-100] * len(p) + a + [eos]) for p, a in zip(prompts, answers)]


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; padding is masked out of attention and of the loss.

    >>> b = collate([([5, 6, 7], [-100, 6, 7]), ([5, 8], [-100, 8])], pad_id=1)
    >>> b["input_ids"].tolist(), b["labels"].tolist(), b["attention_mask"].tolist()
    ([[5, 6, 7], [5, 8, 1]], [[-100, 6, 7], [-100, 8, -100]], [[1, 1, 1], [1, 1, 0]])
    """
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, :len(x)], labels[r, :len(y)], mask[r, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def epoch_folders(folder: Path) -> dict[int, Path]:
    """{epoch: path} of the published epochs in ``folder`` (children ``epoch_<k>``)."""
    found = {}
    for child in Path(folder).iterdir() if Path(folder).is_dir() else ():
        match = EPOCH.match(child.name)
        if match and child.is_dir() and (child / "config.json").is_file():
            found[int(match.group(1))] = child
    return dict(sorted(found.items()))


def finetune(base: Path, out: Path, items: list[Item], cfg: SFTConfig, *, seed: int, desc: str = "sft",
             logger=None) -> dict[int, Path]:
    """Fine-tune the model in ``base`` on ``items`` for ``cfg.epochs`` epochs; return {epoch: folder}.

    Epochs already published in ``out`` (with optimizer state) are resumed from, not redone.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(cfg.threads)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(training_device(cfg))
    optimizer = build_optimizer(model, cfg)
    rows = encode(items, tokenizer)
    per_epoch = cfg.steps_per_epoch(len(rows))
    total = per_epoch * cfg.epochs
    done = {e: p for e, p in epoch_folders(out).items() if e <= cfg.epochs and (p / STATE_FILE).is_file()}
    first = max(done, default=0)
    if first:
        load_state(model, optimizer, done[first])
    device = next(model.parameters()).device
    model.train()
    bar = tqdm(total=total, initial=first * per_epoch, desc=desc, unit="step", leave=False, mininterval=1.0)
    for epoch in range(first + 1, cfg.epochs + 1):
        for position in range(per_epoch):
            step = (epoch - 1) * per_epoch + position
            lr = sft_lr(step, cfg, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            picked = batch_indices(position, cfg.batch_size, len(rows), seed * 1000 + epoch)
            batch = {k: v.to(device) for k, v in collate([rows[i] for i in picked], tokenizer.pad_token_id).items()}
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
            if logger is not None:
                logger({f"{desc}/loss": loss.item(), f"{desc}/lr": lr}, step + 1)
        done[epoch] = _publish(model, optimizer, tokenizer, Path(out) / f"epoch_{epoch}", epoch)
    bar.close()
    return {e: done[e] for e in range(1, cfg.epochs + 1)}


def _publish(model, optimizer, tokenizer, final: Path, epoch: int) -> Path:
    tmp = temp_path(final)  # also removes those left by a run killed while saving this epoch
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final
