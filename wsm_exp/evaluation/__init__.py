"""Evaluation with lm-evaluation-harness: offline task configs, suites, a content-keyed score cache.

Example:
    >>> from wsm_exp.evaluation import SuiteConfig
    >>> SuiteConfig(tasks=["wsm_piqa"]).device
    'cpu'
"""

from wsm_exp.evaluation.harness import Evaluation, Score, evaluate, evaluate_model, model_identity
from wsm_exp.evaluation.suites import SuiteConfig

__all__ = ["Evaluation", "Score", "SuiteConfig", "evaluate", "evaluate_model", "model_identity"]
