"""Evaluation with lm-evaluation-harness: offline task configs, suites, a content-keyed score cache.

The harness (and with it torch, transformers and lm-eval) is imported on first use, so reading a suite's
settings (the pre-flight, ``plan=true``, a refused command) starts in a fraction of the time.

Example:
    >>> from wsm_exp.evaluation import SuiteConfig
    >>> SuiteConfig(tasks=["wsm_piqa"]).device
    'cpu'
"""

from wsm_exp.evaluation.suites import SuiteConfig

_HARNESS = ("Evaluation", "Score", "evaluate", "evaluate_model", "model_identity")


def __getattr__(name: str):
    if name in _HARNESS:
        from wsm_exp.evaluation import harness

        return getattr(harness, name)
    raise AttributeError(f"module 'wsm_exp.evaluation' has no attribute {name!r}")


__all__ = ["Evaluation", "SuiteConfig", "Score", "evaluate", "evaluate_model", "model_identity"]
