"""Synthetic sweep folders with planted effects, written through the real result schema."""

from __future__ import annotations

import json

import numpy as np

from wsm_exp.sweep import results
from wsm_exp.sweep.variants import fidelity_branch, merge_then_decay_variant, merge_variant, raw_variant, wsd_variant

TASKS = {"t_gk": "general_knowledge", "t_lang": "language", "t_math": "math"}


def _rows(variant, score: float, loss: float, sweep: str, rng) -> list[dict]:
    fields = variant.row_fields(tokens_per_step=100, branch_start=0, branch_steps=128)
    rows = [results.make_row(sweep=sweep, **fields, task=task, category=cat, metric="acc",
                             value=float(np.clip(score + rng.normal(0, 0.002), 0, 1)))
            for task, cat in TASKS.items()]
    rows.append(results.make_row(sweep=sweep, **fields, task="wsm_heldout_bpb", category="heldout",
                                 metric="bits_per_byte", value=loss, higher_is_better=False))
    return rows


def write_sweep(folder, *, seeds=(0, 1, 2), wsm_gain=0.05, seed_noise=0.01, duration_effect=0.0,
                wsd_score=0.40, sweep="synthetic", failed_variant=False, decay_merge_gain=None,
                merge_then_decay_gain=None):
    """A grid of mean merges (Δ × N) plus WSD and raw baselines; scores in [0, 1]. With
    ``decay_merge_gain``, also a merge of the WSD branch's last 4 checkpoints scoring that much above its end;
    with ``merge_then_decay_gain``, a decay from the 4-checkpoint merge ending at step 96 scoring that much
    above the same decay from checkpoint 96."""
    for seed in seeds:
        rng = np.random.default_rng(seed)
        shift = rng.normal(0, seed_noise)
        for interval in (8, 16, 32):
            for quantity in (1, 2, 4):
                steps = [128 - (quantity - 1 - i) * interval for i in range(quantity)]
                v = merge_variant(curve="mean", steps=steps, weights=[1 / quantity] * quantity,
                                  interval=interval, duration=interval * quantity, seed=seed)
                score = wsd_score + wsm_gain + duration_effect * np.log2(interval * quantity / 8) + shift
                if quantity == 1:  # no merge: the raw checkpoint, whatever its nominal D = Δ
                    score = wsd_score - 0.05 + shift
                results.write_job(folder, v.name, "fp", _rows(v, score, 3.9 + 0.01 * seed, sweep, rng))
        for variant, score in ((wsd_variant(shape="1-sqrt", step=128, decay_steps=128, seed=seed), wsd_score),
                               (raw_variant(step=128, seed=seed), wsd_score - 0.05)):
            results.write_job(folder, variant.name, "fp", _rows(variant, score + shift, 3.85 + 0.01 * seed, sweep, rng))
        if decay_merge_gain is not None:
            v = merge_variant(curve="mean", steps=[104, 112, 120, 128], weights=[0.25] * 4, interval=8, duration=32,
                              seed=seed, branch="wsd_1-sqrt")
            score = wsd_score + decay_merge_gain + shift
            results.write_job(folder, v.name, "fp", _rows(v, score, 3.85, sweep, rng))
        if merge_then_decay_gain is not None:
            merge = merge_variant(curve="mean", steps=[72, 80, 88, 96], weights=[0.25] * 4, interval=8, duration=32,
                                  seed=seed)
            after = merge_then_decay_variant(merge=merge, shape="1-sqrt", decay_steps=32)
            plain = wsd_variant(shape="1-sqrt", step=128, decay_steps=32, seed=seed, branch=fidelity_branch(128, 32))
            for variant, score in ((after, wsd_score + merge_then_decay_gain), (plain, wsd_score)):
                results.write_job(folder, variant.name, "fp", _rows(variant, score + shift, 3.85 + 0.01 * seed, sweep, rng))
    if failed_variant:
        bad = merge_variant(curve="ema", steps=[120, 128], weights=[0.5, 0.5], interval=8, duration=16)
        results.write_job(folder, bad.name, "", [results.make_row(sweep=sweep, **bad.row_fields(
            tokens_per_step=100, branch_start=0, branch_steps=128), status="failed", error="boom: NaN")])
    results.write_results(folder)
    return folder


def jobs_json(folder):
    return [json.loads(p.read_text()) for p in (folder / "jobs").glob("*.json")]
