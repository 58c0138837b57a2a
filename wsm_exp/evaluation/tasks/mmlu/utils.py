"""MMLU subject loader (shared with the parent folder's loaders)."""

from wsm_exp.evaluation.tasks.utils import mmlu  # noqa: F401  (lm-eval resolves !function utils.mmlu here)
