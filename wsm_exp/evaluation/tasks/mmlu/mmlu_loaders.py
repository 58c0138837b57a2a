"""MMLU subject loader (shared with the parent folder's loaders)."""

from wsm_exp.evaluation.tasks.loaders import mmlu  # noqa: F401  (lm-eval resolves !function mmlu_loaders.mmlu here)
