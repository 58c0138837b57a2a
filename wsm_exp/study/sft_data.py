"""SFT data of the embedded study: seeded instruction-style items with exact-match answers, offline.

Three skills a 0.2M-parameter model learns well above chance in a minute of fine-tuning:

| skill | Table 2 column | prompt (then `Response:`) | answer |
|---|---|---|---|
| ``copy`` | language | ``Repeat the letters: q e d`` | ``q e d`` |
| ``add`` | math | ``Add the numbers: 23 + 45`` | ``68`` |
| ``max`` | reason | ``Which number is larger: 34 or 57?`` | ``57`` |

Everything is generated (3-letter strings, 2-digit numbers): no corpus, no license. Copy uses
spaced letters of a fixed length, so each answer token sits at a fixed distance back in the prompt
whatever the tokenizer (a 0.2M-parameter model learned to copy only the last token of whole words,
whose token count varies). Every skill's item space is split once, by a hash of the item's prompt, into a
training side and a held-out side (``HELDOUT_PERCENT``); SFT items are drawn from the training side
only, evaluation items (the ``wsm_sft_*`` lm-eval tasks) from the held-out side only, each with its
own seed namespace, so the two are disjoint by construction (and tested by set intersection).

Example:
    >>> item_split("Add the numbers: 23 + 45") in {"train", "heldout"}
    True
    >>> [i.answer for i in sample_items("add", 3, seed=0, split="train")] == \
        [i.answer for i in sample_items("add", 3, seed=0, split="train")]
    True
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SKILLS = ("copy", "add", "max")
CATEGORY = {"copy": "language", "add": "math", "max": "reason"}  # Table 2's columns
HELDOUT_PERCENT = 10  # share of each skill's item space reserved for evaluation
NUMBERS = range(100)  # operands of add and max: 10,000 ordered pairs
LETTERS = "abcdefghijklmnopqrstuvwxyz"  # copy: every string of 3 lowercase letters, 17,576 items
RESPONSE = "\nResponse:"  # ends every prompt; the answer follows after one space


@dataclass(frozen=True)
class Item:
    """One instruction: the model reads ``prompt`` and must answer ``answer`` (exact match)."""

    skill: str
    prompt: str
    answer: str

    @property
    def category(self) -> str:
        return CATEGORY[self.skill]


def item_split(prompt: str) -> str:
    """``train`` or ``heldout``, by a hash of the prompt (fixed forever: it defines the eval sets)."""
    bucket = int(hashlib.sha256(f"sft:{prompt}".encode()).hexdigest(), 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def _instruction(skill: str, payload: tuple) -> Item:
    if skill == "copy":
        letters = " ".join(payload)
        return Item(skill, f"Repeat the letters: {letters}{RESPONSE}", letters)
    a, b = payload
    if skill == "add":
        return Item(skill, f"Add the numbers: {a} + {b}{RESPONSE}", str(a + b))
    return Item(skill, f"Which number is larger: {a} or {b}?{RESPONSE}", str(max(a, b)))


@lru_cache(maxsize=8)
def item_space(skill: str, split: str) -> tuple[Item, ...]:
    """Every item of ``skill`` on one side of the split, in a fixed order."""
    if skill not in SKILLS:
        raise ValueError(f"Unknown SFT skill {skill!r}; allowed: {', '.join(SKILLS)}.")
    if skill == "copy":
        payloads = list(itertools.product(LETTERS, repeat=3))
    else:
        payloads = [(a, b) for a in NUMBERS for b in NUMBERS if skill == "add" or a != b]
    items = (_instruction(skill, p) for p in payloads)
    return tuple(i for i in items if item_split(i.prompt) == split)


def sample_items(skill: str, n: int, *, seed: int, split: str) -> list[Item]:
    """``n`` items of one side of the split, drawn without replacement while they last (seeded)."""
    space = item_space(skill, split)
    rng = np.random.default_rng([seed, SKILLS.index(skill), 0 if split == "train" else 1])
    order = np.concatenate([rng.permutation(len(space)) for _ in range(-(-n // len(space)))])
    return [space[i] for i in order[:n]]


def training_items(n_per_skill: int, seed: int) -> list[Item]:
    """The SFT mix: ``n_per_skill`` training-side items of every skill, interleaved in a seeded order."""
    items = [i for skill in SKILLS for i in sample_items(skill, n_per_skill, seed=seed, split="train")]
    order = np.random.default_rng([seed, 99]).permutation(len(items))
    return [items[i] for i in order]


EVAL_SEED = 20_250_717  # evaluation items: a seed namespace of their own (and the held-out side only)


def eval_items(skill: str, n: int) -> list[Item]:
    """The held-out evaluation items of a skill (what the ``wsm_sft_<skill>`` task scores)."""
    return sample_items(skill, n, seed=EVAL_SEED, split="heldout")
