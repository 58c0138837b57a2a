"""Generative tasks: exact match by generation (GSM8K, MATH) and sandboxed pass@1 (HumanEval, MBPP)."""

import importlib.util
import math
import sys

import pytest

from helpers.evaluation import tiny_lm
from wsm_exp.evaluation import SuiteConfig, evaluate_model
from wsm_exp.evaluation.suites import TASK_DIR

sys.path.insert(0, str(TASK_DIR))
scoring = importlib.import_module("scoring")
loaders = importlib.import_module("loaders")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_lm(tmp_path_factory.mktemp("lm") / "model")


def test_reference_solutions_pass_and_broken_ones_fail():
    humaneval = loaders.humaneval()["test"]
    mbpp = loaders.mbpp()["test"]
    for doc in list(humaneval)[:5]:
        assert scoring.score_humaneval(doc, [doc["canonical_solution"]]) == {"pass_at_1": 1.0}, doc["task_id"]
        assert scoring.score_humaneval(doc, ["    return None\n"]) == {"pass_at_1": 0.0}, doc["task_id"]
    for doc in list(mbpp)[:5]:
        assert scoring.score_mbpp(doc, [doc["code"]]) == {"pass_at_1": 1.0}, doc["task_id"]
        assert scoring.score_mbpp(doc, ["pass"]) == {"pass_at_1": 0.0}, doc["task_id"]


def test_programs_run_isolated_with_timeout_and_memory_cap():
    assert scoring.run_program("import sys; sys.exit(0)")
    assert not scoring.run_program("raise SystemExit(3)")
    assert not scoring.run_program("while True: pass", timeout=1.0)
    assert not scoring.run_program("x = bytearray(8 * 1024**3)")
    # an empty scratch folder as working directory, no inherited environment, no site-packages
    assert scoring.run_program("import os, sys; assert os.listdir('.') == ['program.py']; "
                               "assert 'HOME' not in os.environ; assert not any('site-packages' in p for p in sys.path)")


@pytest.mark.parametrize("generation, gold, correct", [
    ("... so $x=4$.\nFinal Answer: The final answer is $4$. I hope it is correct.", "4", True),
    ("Final Answer: The final answer is $\\dfrac{1}{2}$. I hope it is correct.", "\\frac{1}{2}", True),
    ("We get \\boxed{\\frac12}.", "\\frac{1}{2}", True),
    ("Final Answer: The final answer is $10^\\circ$. I hope it is correct.", "10", True),
    ("Final Answer: The final answer is $5$. I hope it is correct.", "4", False),
    ("no answer here", "4", False),
])
def test_math_answers_are_extracted_and_normalised(generation, gold, correct):
    assert scoring.score_math({"answer": gold}, [generation]) == {"exact_match": float(correct)}


def test_math_gold_answers_match_their_own_solutions():
    docs = list(loaders.minerva_math()["test"])[:200]
    matched = sum(scoring.score_math(d, [d["solution"]])["exact_match"] for d in docs)
    assert matched / len(docs) > 0.9


@pytest.mark.slow  # > 5 s: the full suite runs it
def test_exact_match_tasks_run_through_lm_eval(model, tmp_path):
    scores = evaluate_model(model, SuiteConfig(tasks=["wsm_gsm8k", "wsm_math"], limit=1), cache_dir=tmp_path)
    got = {(s.task, s.metric) for s in scores}
    assert {("wsm_gsm8k", "exact_match"), ("wsm_math", "exact_match")} <= got
    assert all(math.isfinite(s.value) and 0 <= s.value <= 1 and s.n_samples == 1 for s in scores)


@pytest.mark.slow  # runs model-written programs: ~45 s under load
def test_code_execution_needs_the_explicit_flag(model, tmp_path):
    with pytest.raises(PermissionError, match="wsm_humaneval execute code .* eval.allow_code_execution=true"):
        evaluate_model(model, SuiteConfig(tasks=["wsm_humaneval"], limit=1), cache_dir=tmp_path)
    assert not any(tmp_path.rglob("*.json"))
    suite = SuiteConfig(tasks=["wsm_humaneval", "wsm_mbpp"], limit=2, allow_code_execution=True)
    scores = evaluate_model(model, suite, cache_dir=tmp_path)
    assert {(s.task, s.metric) for s in scores} == {("wsm_humaneval", "pass_at_1"), ("wsm_mbpp", "pass_at_1")}
    # a random tiny model writes no working program
    assert all(s.value == 0.0 and s.n_samples == 2 for s in scores)
