"""The embedded tiny pre-training study: corpora, tokenizer, LR schedules, trainer, branches.

Example:
    >>> from wsm_exp.study import TrainConfig
    >>> TrainConfig().switch_step
    1500
"""

from wsm_exp.study.branches import ensure_branches, study_key
from wsm_exp.study.config import DataConfig, ModelConfig, TrainConfig
from wsm_exp.study.data import heldout_path

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "ensure_branches", "heldout_path", "study_key"]
