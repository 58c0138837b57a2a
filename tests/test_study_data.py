"""Corpora build: deterministic, cached, held-out split disjoint from training."""

import json

import pytest

from helpers.study import DATA
from wsm_exp.evaluation.tasks import loaders as benchmark_data
from wsm_exp.study.data import build_data, mixes, split_of, wikipedia


@pytest.fixture(scope="module")
def study_mixes():
    return mixes(DATA)


def test_build_is_deterministic_and_cached(tmp_path):
    first = build_data(DATA, tmp_path / "a")
    second = build_data(DATA, tmp_path / "b")
    assert first.root.name == second.root.name  # same content key
    assert (first.tokens("general") == second.tokens("general")).all()
    assert (first.tokens("anneal") == second.tokens("anneal")).all()
    assert first.heldout.read_text() == second.heldout.read_text()
    stamp = (first.root / "done").stat().st_mtime_ns
    assert build_data(DATA, tmp_path / "a").root == first.root
    assert (first.root / "done").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert (first.tokenizer_dir / "tokenizer.json").is_file()


def test_heldout_articles_never_reach_training(study_mixes):
    general, anneal, heldout = study_mixes
    titles = {row["title"] for row in heldout}
    assert titles and all(split_of(t, DATA.heldout_percent) == "heldout" for t in titles)
    articles = wikipedia()
    training_text = "\n".join(general + anneal)
    for title in list(titles)[:20]:
        assert articles[title][:200] not in training_text
    train_titles = [t for t in articles if split_of(t, DATA.heldout_percent) == "train"]
    assert not titles & set(train_titles)
    share = len([t for t in articles if split_of(t, DATA.heldout_percent) == "heldout"]) / len(articles)
    assert 0.03 < share < 0.07


def test_heldout_file_is_jsonl_text(tmp_path):
    rows = [json.loads(line) for line in build_data(DATA, tmp_path).heldout.read_text().splitlines()]
    assert len(rows) == DATA.heldout_docs and all(r["text"] for r in rows)


def test_benchmark_passages_never_reach_training(study_mixes):
    """The evaluated texts (LAMBADA passages, ARC questions, PIQA goals) are not in the training mixes."""
    general, anneal, _ = study_mixes
    training_text = "\n".join(general + anneal)
    probes = [row["text"][-100:] for row in benchmark_data.lambada()["test"].select(range(1000))]
    probes += [row["question"] for row in benchmark_data.arc_easy()["test"].select(range(500))]
    probes += [row["goal"] for row in benchmark_data.piqa()["test"].select(range(500)) if len(row["goal"]) > 30]
    assert len(probes) > 1500
    assert [p for p in probes if p in training_text] == []
