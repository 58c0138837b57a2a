"""The offline suite against a real model: SmolLM2-135M-Instruct must score near its published value."""

import math

import pytest

from wsm_exp.evaluation import SuiteConfig, evaluate_model
from wsm_exp.evaluation.reference import CHANCE, PUBLISHED, export_smollm2

N_DOCS = 100  # ~30 s on 2 CPU cores; the tolerance below scales with it


@pytest.mark.slow  # a 135M model through lm-eval: ~30 s idle, minutes under load
def test_smollm2_arc_easy_sits_near_its_published_score(tmp_path):
    model = export_smollm2(tmp_path / "smollm2")
    suite = SuiteConfig(tasks=["wsm_arc_easy"], limit=N_DOCS, batch_size=16)
    (score,) = [s for s in evaluate_model(model, suite, cache_dir=tmp_path / "scores") if s.metric == "acc"]
    published = PUBLISHED[("wsm_arc_easy", "acc")] / 100
    # 3 binomial standard errors at N_DOCS, plus 3 points for the 4-bit GGUF and the split
    # (ours: validation; published: test)
    tolerance = 3 * math.sqrt(published * (1 - published) / N_DOCS) + 0.03
    assert score.n_samples == N_DOCS
    assert abs(score.value - published) < tolerance, (score.value, published, tolerance)
    assert score.value > CHANCE["wsm_arc_easy"] / 100 + 0.1
