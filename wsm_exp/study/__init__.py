"""The embedded tiny pre-training study: corpora, tokenizer, LR schedules, trainer, branches.

The heavy parts (torch, transformers) load on first use, so the configs and schedules import in
milliseconds (the pre-flight and ``plan=true`` read them without training anything).

Example:
    >>> from wsm_exp.study import TrainConfig
    >>> TrainConfig().switch_step
    1500
"""

from importlib import import_module

from wsm_exp.study.config import DataConfig, ModelConfig, TrainConfig

_LAZY = {"ensure_branches": "wsm_exp.study.branches", "study_key": "wsm_exp.study.branches",
         "heldout_path": "wsm_exp.study.data"}

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "ensure_branches", "heldout_path", "study_key"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wsm_exp.study' has no attribute {name!r}")
