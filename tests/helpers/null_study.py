"""Synthetic studies held in memory for null-rate simulations through the report's own functions: merges of
one window and a WSD decay, per seed, with planted training-seed noise and per-piece held-out values whose
pieces share source texts (so the clustered errors are exercised)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from analysis.findings import findings
from analysis.load import model_scores, prepared
from wsm_exp.sweep.record import results
from wsm_exp.sweep.spec.variants import merge_variant, wsd_variant

MERGES = ((2, 16), (4, 16), (4, 32))  # (N, D): correlated merges of one series


def study(rng, *, seeds=1, effect=0.0, seed_sd=0.01, texts=25, pieces=4, text_sd=0.03, piece_sd=0.03,
          shared=0.8):
    """(frame, samples): merges sit ``effect`` bpb below the decay (negative: better); every model of a seed gets
    training noise (merges share ``shared`` of their variance, as merges of one run do)."""
    docs = texts * pieces
    source = np.repeat(np.arange(texts), pieces).astype(str)
    difficulty = 2.3 + rng.normal(0, 0.3, texts)[np.repeat(np.arange(texts), pieces)] + rng.normal(0, 0.1, docs)
    weight = rng.integers(200, 900, docs).astype(float)
    rows, samples = [], {}
    for seed in range(seeds):
        common = rng.normal(0, seed_sd * np.sqrt(shared))
        models = [(merge_variant(curve="mean", steps=[128 - (n - 1 - i) * (d // n) for i in range(n)],
                                 weights=[1 / n] * n, interval=d // n, duration=d, seed=seed),
                   effect + common + rng.normal(0, seed_sd * np.sqrt(1 - shared))) for n, d in MERGES]
        models.append((wsd_variant(shape="1-sqrt", step=128, decay_steps=128, seed=seed), rng.normal(0, seed_sd)))
        for variant, offset in models:
            model_hash = hashlib.sha256(variant.name.encode()).hexdigest()[:16]
            noise = rng.normal(0, text_sd, texts)[np.repeat(np.arange(texts), pieces)] + rng.normal(0, piece_sd, docs)
            bpb = difficulty + offset + noise
            samples[model_hash] = pd.DataFrame({"task": "wsm_heldout_bpb", "doc_id": np.arange(docs).astype(str),
                                                "metric": "bits_per_byte", "value": bpb, "weight": weight,
                                                "source": source})
            fields = variant.row_fields(tokens_per_step=100, branch_start=0, branch_steps=128)
            rows.append(results.make_row(sweep="sim", **fields, model_hash=model_hash, task="wsm_heldout_bpb",
                                         category="heldout", metric="bits_per_byte",
                                         value=float(np.average(bpb, weights=weight)), higher_is_better=False))
            rows.append(results.make_row(sweep="sim", **fields, model_hash=model_hash, task="wsm_piqa",
                                         category="language", metric="acc", value=0.6, stderr=0.01))
    frame = prepared(pd.DataFrame(rows).assign(primary="heldout_bpb"))
    return frame, samples


def claim_outcome(frame, samples, claim="WSM beats WSD") -> str:
    """The outcome the report gives the claim (analysis.findings, the function the report calls)."""
    table = findings(model_scores(frame), frame, samples=samples)
    return str(table.set_index("claim").loc[claim, "outcome"])


def rate(seeds: int, effect: float, draws: int, seed: int = 0, seed_sd: float = 0.01) -> float:
    """Share of synthetic studies whose report says "WSM beats WSD: reproduced" (analysis.findings itself:
    max-t over the 3 merges, clustered pieces, seeds + documents combined)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([claim_outcome(*study(rng, seeds=seeds, effect=effect, seed_sd=seed_sd)) == "reproduced"
                          for _ in range(draws)]))


def null_bound(draws: int, level: float = 0.025) -> float:
    """The one-sided level plus three Monte-Carlo standard errors of a rate measured over ``draws``."""
    return level + 3 * float(np.sqrt(level * (1 - level) / draws))
