"""Per-document values: real lm-eval samples aggregate to the scores, are cached with them, and are
written atomically into the sweep folder; every project task declares its chance level."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers.evaluation import tiny_lm
from wsm_exp.evaluation import SuiteConfig, evaluate
from wsm_exp.evaluation.chance import chance_level, declared_chance
from wsm_exp.evaluation.samples import COLUMNS, samples_path, write_samples
from wsm_exp.evaluation.suites import TASK_DIR


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    model = tiny_lm(root / "model")
    heldout = root / "heldout.jsonl"
    heldout.write_text("\n".join(json.dumps({"text": f"Article {i}: " + "the river flows to the sea. " * (i + 1)})
                                 for i in range(6)))
    suite = SuiteConfig(tasks=["wsm_heldout_bpb", "wsm_piqa", "wsm_gsm8k_bpb", "wsm_mmlu"], limit=4,
                        limits={"wsm_mmlu": 1})
    first = evaluate(model, suite, cache_dir=root / "cache", extra_data={"heldout": heldout})
    second = evaluate(model, suite, cache_dir=root / "cache", extra_data={"heldout": heldout})
    return first, second


def test_weighted_sample_means_are_the_scores(evaluated):
    first, _ = evaluated
    samples = first.samples
    assert list(samples.columns) == list(COLUMNS)
    for score in first.scores:
        rows = samples[(samples["task"] == score.task) & (samples["metric"] == score.metric)]
        if score.metric in ("byte_perplexity",):
            assert rows.empty  # a corpus perplexity is not a mean of per-document values
            continue
        assert len(rows) == score.n_samples, (score.task, score.metric)
        assert rows["doc_id"].is_unique
        mean = float(np.average(rows["value"], weights=rows["weight"]))
        assert mean == pytest.approx(score.value, rel=1e-9), (score.task, score.metric)
    bpb = samples[samples["task"] == "wsm_heldout_bpb"]
    assert (bpb["weight"] > 1).all() and bpb["weight"].nunique() > 1  # bytes per document
    assert (samples.loc[samples["task"] == "wsm_piqa", "weight"] == 1).all()
    assert samples.loc[samples["task"] == "wsm_mmlu", "doc_id"].str.contains("/").all()  # subtask/doc


def test_samples_are_cached_with_the_scores(evaluated):
    first, second = evaluated
    assert all(s.from_cache for s in second.scores)
    pd.testing.assert_frame_equal(first.samples, second.samples)


def test_samples_file_is_written_atomically(evaluated, tmp_path):
    first, _ = evaluated
    path = write_samples(tmp_path, "abc123", first.samples)
    assert path == samples_path(tmp_path, "abc123")
    pd.testing.assert_frame_equal(pd.read_parquet(path), first.samples)
    assert [p.name for p in path.parent.iterdir()] == ["abc123.parquet"]  # no temporary left behind


def test_every_project_task_declares_its_chance_level():
    names = {path.stem for path in TASK_DIR.glob("wsm_*.yaml")} | {"wsm_mmlu"}
    assert names <= set(declared_chance())
    assert chance_level("wsm_commonsense_qa") == 0.2 and chance_level("wsm_boolq") == 0.5
    for task in names:
        level = chance_level(task)
        if task.endswith("_bpb"):
            assert level is None, task  # a loss has no chance level
        else:
            assert level is not None and 0 <= level < 1, task
