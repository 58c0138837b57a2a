"""Loaders of the ``wsm_sft_*`` tasks: held-out instruction items of the embedded study's SFT.

The items come from ``wsm_exp.study.sft_data`` (the held-out side of each skill's item space, a seed
namespace of their own), so they never appear in the SFT data. Their digest is pinned here: this
file is part of the score cache's task fingerprint, so a change of the generator is refused until
the digest is updated, which then invalidates every cached SFT score.

Example:
    >>> rows("add")[0]
    {'prompt': 'Add the numbers: 6 + 58\\nResponse:', 'answer': '64'}
"""

from __future__ import annotations

import hashlib
import json

import datasets

from wsm_exp.study.sft_data import eval_items

N_ITEMS = 200  # per skill: ±3.5 points of standard error at 50%, still seconds per model
PINNED = {  # sha256 of the held-out items (json of prompt/answer pairs), first 16 hex digits
    "copy": "cba1588620ef42f0",
    "add": "782aa173665ddde5",
    "max": "857e0118e14d1d6a",
}


def digest(skill: str) -> str:
    payload = json.dumps([[i.prompt, i.answer] for i in eval_items(skill, N_ITEMS)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def rows(skill: str) -> list[dict]:
    """The task's docs, refused when the generator no longer makes the pinned items."""
    if digest(skill) != PINNED[skill]:
        raise RuntimeError(
            f"wsm_sft_{skill}: the held-out items changed (digest {digest(skill)}, pinned {PINNED[skill]} in "
            f"{__file__}). Update PINNED only on purpose: it invalidates every cached wsm_sft_* score."
        )
    return [{"prompt": i.prompt, "answer": i.answer} for i in eval_items(skill, N_ITEMS)]


def _test(skill: str) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows(skill))})


def copy(**_):
    return _test("copy")


def add(**_):
    return _test("add")


def larger(**_):
    return _test("max")
