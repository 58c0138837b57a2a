"""The simulated studies of tests/helpers/null_claims.py written as the report reads them: result rows through
the real schema plus per-document samples (by model hash), so a draw goes through the report's frame path
(analysis.findings, analysis.beyond) and its verdicts can be compared with the array rules' on the same draw.

Layout of a findings study: merges of three curves (1-sqrt, mean, EMA) at two windows of one duration (N = 2,
Δ = 8 and N = 4, Δ = 4; D = 16, end 128) and two WSD decays (1-sqrt, linear); held-out bits per byte on
25 texts × 4 pieces and one accuracy task (wsm_arc_easy, 200 items).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from analysis.load import prepared
from helpers.null_claims import ITEMS, Noise, PIECES, TEXTS, accuracies, curves, losses, loss_vs_score
from helpers.null_claims import one_pair, wsm_beats_wsd
from wsm_exp.sweep.record import results
from wsm_exp.sweep.spec.variants import merge_variant, wsd_variant

CURVES = ("1-sqrt", "mean", "ema")
WINDOWS = ((2, 8), (4, 4))  # (N, Δ) at D = 16
MERGES = [(curve, n, i) for curve in CURVES for n, i in WINDOWS]  # model index = position; the decays follow
DECAYS = ("1-sqrt", "linear")


def variants(seed: int) -> list:
    """The study's models of one seed, in the arrays' model order."""
    merges = [merge_variant(curve=c, steps=[128 - (n - 1 - k) * i for k in range(n)], weights=[1 / n] * n,
                            interval=i, duration=n * i, seed=seed) for c, n, i in MERGES]
    return merges + [wsd_variant(shape=shape, step=128, decay_steps=128, seed=seed) for shape in DECAYS]


def findings_draws(rng, n: int, seeds: int, merge_bpb: list[float], merge_acc: list[float]):
    """(bpb, weights, acc) of ``n`` studies: merges at ``merge_bpb`` (bpb offsets) and ``merge_acc`` (probability
    shifts), the decays at 0 and +0.01 bpb."""
    bpb, weights = losses(rng, n, seeds, [*merge_bpb, 0.0, 0.01], len(DECAYS), Noise())
    acc = accuracies(rng, n, seeds, [*merge_acc, 0.0, -0.01], [0.8] * len(MERGES) + [0.3] * len(DECAYS))
    return bpb, weights, acc


def array_outcomes(bpb, weights, acc) -> dict[str, np.ndarray]:
    """The findings claims' outcomes by the array rules (claim name as the findings table writes it)."""
    merges, decays = list(range(len(MERGES))), [len(MERGES) + k for k in range(len(DECAYS))]
    both, loss, score = loss_vs_score(bpb, weights, acc, merges, decays)
    combined, at_least, above = curves(bpb, weights, [0, 1], [2, 3], [4, 5])
    return {"WSM beats WSD": wsm_beats_wsd(bpb, weights, merges, decays),
            "merged models can have higher loss yet better scores": both,
            "merged models can have higher loss yet better scores: loss part": loss,
            "merged models can have higher loss yet better scores: score part": score,
            "1-sqrt ≥ mean > EMA": combined, "1-sqrt ≥ mean > EMA: 1-sqrt ≥ mean": at_least,
            "1-sqrt ≥ mean > EMA: mean > EMA": above,
            # the family the report picks by design: most intervals, then the longest D, then the first curve
            "finer granularity is slightly better at fixed duration": one_pair(bpb, weights, 1, 0)}


def frame_of(bpb, weights, acc, i: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Study ``i`` as results rows and samples (model hash → per-document values)."""
    rows, samples = [], {}
    source = np.repeat(np.arange(TEXTS), PIECES).astype(str)
    for seed in range(bpb.shape[2]):
        for m, variant in enumerate(variants(seed)):
            model_hash = hashlib.sha256(variant.name.encode()).hexdigest()[:16]
            loss, hits = bpb[i, m, seed], acc[i, m, seed] / 100
            samples[model_hash] = pd.concat([
                pd.DataFrame({"task": "wsm_heldout_bpb", "doc_id": np.arange(len(loss)).astype(str),
                              "metric": "bits_per_byte", "value": loss, "weight": weights[i], "source": source}),
                pd.DataFrame({"task": "wsm_arc_easy", "doc_id": np.arange(ITEMS).astype(str), "metric": "acc",
                              "value": hits, "weight": 1.0, "source": ""})], ignore_index=True)
            fields = variant.row_fields(tokens_per_step=100, branch_start=0, branch_steps=128)
            rows.append(results.make_row(sweep="sim", **fields, model_hash=model_hash, task="wsm_heldout_bpb",
                                         category="heldout", metric="bits_per_byte",
                                         value=float(np.average(loss, weights=weights[i])), higher_is_better=False))
            mean = float(hits.mean())
            rows.append(results.make_row(sweep="sim", **fields, model_hash=model_hash, task="wsm_arc_easy",
                                         category="general_knowledge", metric="acc", value=mean,
                                         stderr=float(np.sqrt(mean * (1 - mean) / (ITEMS - 1)))))
    return prepared(pd.DataFrame(rows).assign(primary="heldout_bpb")), samples
