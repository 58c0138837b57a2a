"""Synthetic sweep folders with planted effects, written through the real result schema."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from wsm_exp.study.branch_spec import Fidelity
from wsm_exp.sweep.record import results
from wsm_exp.sweep.spec.variants import merge_then_decay_variant, merge_variant, raw_variant, wsd_variant

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
            plain = wsd_variant(shape="1-sqrt", step=128, decay_steps=32, seed=seed, branch=Fidelity(128, 32).name)
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


def write_doc_sweep(folder, *, seeds=(0,), docs=300, merge_bpb_gain=0.05, bpb_doc_noise=0.05, accuracy=None,
                    curves=("mean",), curve_gain=None, samples=True, suite="tiny", primary="heldout_bpb",
                    raw_bpb_gain=0.0, seed_shift=0.0, wsd_seeds=None, extra_bpb_tasks=False, study="s"):
    """A sweep whose models carry per-document values (``samples/<model_hash>.parquet``), as the job writes.

    Held-out bits per byte per document: a document difficulty shared by all models, plus per-model
    noise ``bpb_doc_noise``; merges (N = 2, 4 at D = 16, 32, 64 per curve) sit ``merge_bpb_gain`` below
    the WSD end (plus ``curve_gain[curve]``), the raw checkpoint (N = 1) ``raw_bpb_gain`` below it. Accuracy
    tasks ``accuracy`` = {task: (category, probability)} draw 0/1 per document with that probability.
    """
    from wsm_exp.evaluation.samples import to_frame, write_samples

    rng = np.random.default_rng(12345)
    difficulty = rng.gamma(4.0, 0.5, size=docs) + 1.0
    n_bytes = rng.integers(200, 3000, size=docs).astype(float)
    accuracy = accuracy or {}
    curve_gain = curve_gain or {}
    bpb_tasks = {"wsm_heldout_bpb": "heldout"}
    if extra_bpb_tasks:
        bpb_tasks |= {"wsm_gsm8k_bpb": "math", "wsm_humaneval_bpb": "code"}
    for seed in seeds:
        shift = seed_shift * seed
        models = []
        for curve in curves:
            for quantity in (2, 4):
                for duration in (16, 32, 64):
                    interval = duration // quantity
                    steps = [128 - (quantity - 1 - i) * interval for i in range(quantity)]
                    v = merge_variant(curve=curve, steps=steps, weights=[1 / quantity] * quantity, interval=interval,
                                      duration=duration, seed=seed)
                    models.append((v, -merge_bpb_gain - curve_gain.get(curve, 0.0) + 0.002 * np.log2(duration)))
        models.append((raw_variant(step=128, seed=seed), -raw_bpb_gain))
        if wsd_seeds is None or seed in wsd_seeds:
            models.append((wsd_variant(shape="1-sqrt", step=128, decay_steps=128, seed=seed), 0.0))
        for variant, offset in models:
            model_hash = hashlib.sha256(f"{study}/{variant.name}".encode()).hexdigest()[:16]
            fields = variant.row_fields(tokens_per_step=100, branch_start=0, branch_steps=128)
            rows, sample_rows = [], []
            for task, category in bpb_tasks.items():
                bpb = difficulty + offset + shift + rng.normal(0, bpb_doc_noise, size=docs)
                sample_rows += [{"task": task, "doc_id": str(i), "metric": "bits_per_byte", "value": v, "weight": w}
                                for i, (v, w) in enumerate(zip(bpb, n_bytes))]
                rows.append(results.make_row(sweep="docs", **fields, model_hash=model_hash, task=task,
                                             category=category, metric="bits_per_byte", value=float(
                                                 np.average(bpb, weights=n_bytes)), higher_is_better=False))
            for task, (category, probability) in accuracy.items():
                hits = (rng.random(docs) < probability).astype(float)
                sample_rows += [{"task": task, "doc_id": str(i), "metric": "acc", "value": v, "weight": 1.0}
                                for i, v in enumerate(hits)]
                mean = float(hits.mean())
                rows.append(results.make_row(sweep="docs", **fields, model_hash=model_hash, task=task,
                                             category=category, metric="acc", value=mean,
                                             stderr=float(np.sqrt(mean * (1 - mean) / (docs - 1)))))
            results.write_job(folder, variant.name, "fp", rows)
            if samples:
                write_samples(folder, model_hash, to_frame(sample_rows))
    (folder / "sweep.json").write_text(json.dumps({"key": study, "eval": {"name": suite, "primary": primary}}))
    results.write_results(folder)
    return folder
