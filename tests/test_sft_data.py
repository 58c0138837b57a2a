"""SFT data and trainer: disjoint held-out items, loss on responses only, resumable epochs."""

from __future__ import annotations

import importlib
import re
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers.evaluation import tiny_lm
from wsm_exp.evaluation.suites import TASK_DIR
from wsm_exp.study.sft_data import (EVAL_SEED, SKILLS, eval_items, item_space, item_split, sample_items,
                                    training_items)
from wsm_exp.study.sft_train import SFTConfig, encode, epoch_folders, finetune, sft_lr
from wsm_exp.study.tokenizer import train_tokenizer

sys.path.insert(0, str(TASK_DIR))
sft_tasks = importlib.import_module("sft_tasks")


def test_heldout_items_are_disjoint_from_training_items_for_any_seed():
    held = {skill: {i.prompt for i in eval_items(skill, sft_tasks.N_ITEMS)} for skill in SKILLS}
    for seed in (0, 1, 2, 7, EVAL_SEED):  # even the evaluation's own seed draws only training-side items
        train = {i.prompt for i in training_items(3000, seed)}
        for skill in SKILLS:
            assert not train & held[skill], (skill, seed)
    for skill in SKILLS:  # by construction: the two sides of every skill's item space never meet
        train_side, heldout_side = item_space(skill, "train"), item_space(skill, "heldout")
        assert not {i.prompt for i in train_side} & {i.prompt for i in heldout_side}
        assert all(item_split(i.prompt) == "heldout" for i in heldout_side)
        assert 0.05 < len(heldout_side) / (len(train_side) + len(heldout_side)) < 0.15


def test_items_answer_their_prompts():
    for item in training_items(200, 0) + eval_items("add", 50) + eval_items("max", 50):
        numbers = [int(n) for n in re.findall(r"\d+", item.prompt)]
        if item.skill == "add":
            assert int(item.answer) == sum(numbers)
        elif item.skill == "max":
            assert int(item.answer) == max(numbers) and numbers[0] != numbers[1]
        else:
            assert item.prompt == f"Repeat the letters: {item.answer}\nResponse:"
            assert re.fullmatch(r"[a-z] [a-z] [a-z]", item.answer)


def test_training_mix_is_seeded_balanced_and_shuffled():
    a, b = training_items(100, 0), training_items(100, 1)
    assert a == training_items(100, 0) and a != b
    assert {s: sum(i.skill == s for i in a) for s in SKILLS} == {s: 100 for s in SKILLS}
    assert [i.skill for i in a[:12]] != sorted(i.skill for i in a[:12])  # interleaved, not blocked
    assert len({i.prompt for i in sample_items("add", 500, seed=0, split="train")}) == 500  # no repeats


def test_eval_tasks_refuse_a_changed_generator(monkeypatch):
    assert len(sft_tasks.rows("add")) == sft_tasks.N_ITEMS
    monkeypatch.setitem(sft_tasks.PINNED, "add", "0" * 16)
    with pytest.raises(RuntimeError, match="held-out items changed"):
        sft_tasks.rows("add")


def test_loss_is_on_the_response_only():
    tok = train_tokenizer(["Add the numbers: 1 + 2\nResponse: 3", "Repeat the word: cat"] * 30, vocab_size=300)
    items = training_items(5, 0)
    for item, (ids, labels) in zip(items, encode(items, tok)):
        assert len(ids) == len(labels)
        prompt = tok(item.prompt, add_special_tokens=False)["input_ids"]
        assert ids[:len(prompt)] == prompt and set(labels[:len(prompt)]) == {-100}
        response = labels[len(prompt):]
        assert -100 not in response and response == ids[len(prompt):]
        assert response[-1] == tok.eos_token_id and tok.decode(response[:-1]) == " " + item.answer


def test_lr_warms_up_then_decays_to_zero():
    cfg = SFTConfig(warmup_steps=4, peak_lr=1.0)
    lrs = [sft_lr(s, cfg, total_steps=20) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and lrs[-1] == 0.0
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_finetune_publishes_every_epoch_and_resumes_to_the_same_weights(tmp_path):
    base = tiny_lm(tmp_path / "base")
    cfg = SFTConfig(epochs=3, items_per_skill=16, batch_size=8, warmup_steps=2, threads=1)
    items = training_items(cfg.items_per_skill, 0)
    full = finetune(base, tmp_path / "full", items, cfg, seed=0)
    assert sorted(full) == [1, 2, 3] == sorted(epoch_folders(tmp_path / "full"))
    weights = {e: load_file(p / "model.safetensors") for e, p in full.items()}
    start = load_file(base / "model.safetensors")
    for e in (1, 2, 3):
        assert any(not torch.equal(weights[e][k], start[k]) for k in start)
    assert any(not torch.equal(weights[2][k], weights[3][k]) for k in start)
    # a run killed after epoch 1 resumes from it and ends with the uninterrupted run's weights
    shutil.copytree(full[1], tmp_path / "killed" / "epoch_1")
    resumed = finetune(base, tmp_path / "killed", items, cfg, seed=0)
    again = load_file(resumed[3] / "model.safetensors")
    assert all(torch.equal(again[k], weights[3][k]) for k in start)
