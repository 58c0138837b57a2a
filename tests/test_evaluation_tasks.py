"""Every task loads offline from installed data and runs through lm-eval; the score cache; validate."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.evaluation import tiny_lm
from wsm_exp.evaluation import SuiteConfig, evaluate_model
from wsm_exp.evaluation.suites import TASK_DIR

ALL_TASKS = ["wsm_arc_easy", "wsm_arc_challenge", "wsm_openbookqa", "wsm_commonsense_qa", "wsm_hellaswag",
             "wsm_piqa", "wsm_winogrande", "wsm_boolq", "wsm_lambada", "wsm_basic_arithmetic", "wsm_gsm8k_bpb",
             "wsm_math_bpb", "wsm_humaneval_bpb", "wsm_mbpp_bpb", "wsm_mmlu", "wsm_heldout_bpb"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_lm(tmp_path_factory.mktemp("lm") / "model")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "heldout.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"Article {i}: the river flows to the sea."}) for i in range(5)))
    return path


@pytest.mark.slow  # > 5 s: the full suite runs it
def test_every_task_runs_offline_with_versions(model, heldout, tmp_path):
    suite = SuiteConfig(tasks=ALL_TASKS, limit=2, limits={"wsm_mmlu": 1})
    scores = evaluate_model(model, suite, cache_dir=tmp_path, extra_data={"heldout": heldout})
    by_task = {}
    for s in scores:
        by_task.setdefault(s.task, {})[s.metric] = s
    assert set(by_task) == set(ALL_TASKS)
    for task, metrics in by_task.items():
        for s in metrics.values():
            assert math.isfinite(s.value), (task, s.metric)
            assert s.harness_version and s.task_hash and s.task_version
    assert {"acc", "acc_norm"} <= set(by_task["wsm_arc_easy"])
    assert by_task["wsm_mmlu"]["acc"].n_samples == 57
    assert by_task["wsm_heldout_bpb"]["bits_per_byte"].higher_is_better is False
    assert by_task["wsm_gsm8k_bpb"]["bits_per_byte"].value > 0
    piqa = by_task["wsm_piqa"]["acc"]
    assert 0 <= piqa.value <= 1 and piqa.n_samples == 2
    assert piqa.stderr == pytest.approx(math.sqrt(piqa.value * (1 - piqa.value) / (piqa.n_samples - 1)))


def test_scores_are_cached_per_model_and_settings(model, heldout, tmp_path):
    suite = SuiteConfig(tasks=["wsm_piqa", "wsm_heldout_bpb"], limit=3)
    first = evaluate_model(model, suite, cache_dir=tmp_path, extra_data={"heldout": heldout})
    assert not any(s.from_cache for s in first)
    second = evaluate_model(model, suite, cache_dir=tmp_path, extra_data={"heldout": heldout})
    assert all(s.from_cache for s in second)
    assert [(s.task, s.metric, s.value) for s in first] == [(s.task, s.metric, s.value) for s in second]
    other_limit = evaluate_model(model, SuiteConfig(tasks=["wsm_piqa"], limit=4), cache_dir=tmp_path)
    assert not any(s.from_cache for s in other_limit)


def test_heldout_task_without_data_says_how_to_fix(model, tmp_path):
    with pytest.raises(Exception, match="wsm_heldout_bpb needs a held-out jsonl"):
        evaluate_model(model, SuiteConfig(tasks=["wsm_heldout_bpb"], limit=2), cache_dir=tmp_path)


@pytest.mark.slow  # > 5 s: the full suite runs it
def test_lm_eval_validate_accepts_the_task_configs():
    generative = ["wsm_gsm8k", "wsm_math", "wsm_humaneval", "wsm_mbpp"]
    tasks = ",".join([t for t in ALL_TASKS if t != "wsm_heldout_bpb"] + generative)
    out = subprocess.run([str(Path(sys.executable).parent / "lm-eval"), "validate", "--tasks", tasks,
                          "--include_path", str(TASK_DIR)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
