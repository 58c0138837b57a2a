"""The staged screen's rule on per-document values: paired where the documents are common, as the report's intervals are."""

from __future__ import annotations

import math
import random
from typing import NamedTuple

import pandas as pd

from wsm_exp.sweep.stage.screen import paired_se, screen_documents, screen_value, select, weighted_se


class Score(NamedTuple):
    """The fields of a harness score the screen reads."""

    task: str
    metric: str
    value: float = math.nan
    stderr: float = math.nan


def heldout(rng: random.Random, difficulty: list[float], shift: float, noise: float) -> pd.DataFrame:
    """Per-document bits per byte of a model: each document's own difficulty, the model's shift, a little noise
    (each document's bytes are the same for every model: ``random.Random(len(difficulty))``)."""
    size = random.Random(len(difficulty))
    return pd.DataFrame({"task": "wsm_heldout_bpb", "doc_id": [str(i) for i in range(len(difficulty))],
                         "metric": "bits_per_byte", "value": [d + shift + rng.gauss(0, noise) for d in difficulty],
                         "weight": [float(size.randint(300, 900)) for _ in difficulty],
                         "source": [f"text {i // 2}" for i in range(len(difficulty))]})


def screened(samples: pd.DataFrame):
    """(screen value, its standard error, per-document values) as the screen pass computes them."""
    docs = screen_documents([Score("wsm_heldout_bpb", "bits_per_byte")], samples)
    value = sum(v * w for v, w, _ in docs.values()) / sum(w for _, w, _ in docs.values())
    _, se, _ = screen_value([Score("wsm_heldout_bpb", "bits_per_byte", value)], samples)
    return (value, se), docs


def test_documents_shared_by_two_models_make_a_finer_rule_than_their_own_standard_errors():
    rng = random.Random(0)
    difficulty = [rng.uniform(0.6, 1.4) for _ in range(48)]  # documents differ far more than the models do
    models = {"best": heldout(rng, difficulty, 0.0, 0.01), "close": heldout(rng, difficulty, 0.0, 0.01),
              "off": heldout(rng, difficulty, 0.05, 0.01)}
    screens, documents = {}, {}
    for name, samples in models.items():
        screens[name], documents[name] = screened(samples)
    unpaired = select(screens, higher_is_better=False)
    paired = select(screens, higher_is_better=False, documents=documents)
    assert {n: d.stage for n, d in unpaired.items()} == {"best": "full", "close": "full", "off": "full"}
    assert {n: d.stage for n, d in paired.items()} == {"best": "full", "close": "full", "off": "screen"}
    assert "paired" in paired["off"].reason and "unpaired" in unpaired["off"].reason
    assert paired["off"].detectable < unpaired["off"].detectable / 5
    # a variant without per-document values (or none in common) falls back to the unpaired rule
    partial = select(screens, higher_is_better=False, documents={"best": documents["best"], "off": {}})
    assert partial["off"] == unpaired["off"]


def test_paired_se_is_the_clustered_se_of_the_differences_on_common_documents():
    rng = random.Random(1)
    for _ in range(200):
        n = rng.randint(2, 30)
        a = {f"t/{i}": (rng.random(), rng.uniform(1, 5), f"c{rng.randint(0, n)}") for i in range(n)}
        b = {k: (v + rng.gauss(0, 0.1), w, c) for k, (v, w, c) in a.items() if rng.random() < 0.8}
        b["t/extra"] = (9.0, 1.0, "x")  # a document only one model has is not compared
        common = sorted(a.keys() & b.keys())
        expected = weighted_se([a[k][0] - b[k][0] for k in common], [a[k][1] for k in common],
                               [a[k][2] for k in common]) if common else math.nan
        got = paired_se(a, b)
        assert (math.isnan(got) and math.isnan(expected)) or math.isclose(got, expected, rel_tol=1e-12)
        assert math.isnan(paired_se(a, {}))


def test_task_screens_pair_each_tasks_accuracy_weighted_to_the_mean_over_tasks():
    rng = random.Random(2)
    for _ in range(30):
        rows, scores = [], []
        for task in ("wsm_arc_easy", "wsm_piqa", "wsm_boolq")[:rng.randint(1, 3)]:
            n = rng.randint(1, 25)
            values = [float(rng.random() < 0.6) for _ in range(n)]
            for metric, vals in (("acc", values), ("acc_norm", [1.0 - v for v in values])):
                rows += [{"task": task, "doc_id": str(i), "metric": metric, "value": v, "weight": 1.0, "source": ""}
                         for i, v in enumerate(vals)]
                scores.append(Score(task, metric, sum(vals) / n, 0.1))
        docs = screen_documents(scores, pd.DataFrame(rows))
        value, _, higher = screen_value(scores)
        assert higher and math.isclose(sum(v * w for v, w, _ in docs.values()) / sum(w for _, w, _ in docs.values()),
                                       value, abs_tol=1e-9)  # acc_norm, the screen's metric where a task has it
    assert screen_documents(scores, None) == {} and screen_documents(scores, pd.DataFrame(rows).iloc[:0]) == {}
