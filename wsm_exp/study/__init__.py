"""The embedded tiny pre-training study: corpora, tokenizer, LR schedules, trainer, branches.

Names load lazily, so the pure parts (``branch_spec``, ``config``, ``schedules``) import without
torch or transformers.

Example:
    >>> from wsm_exp.study import TrainConfig
    >>> TrainConfig().switch_step
    1500
"""

from importlib import import_module

_WHERE = {
    "DataConfig": "wsm_exp.study.config", "ModelConfig": "wsm_exp.study.config", "TrainConfig": "wsm_exp.study.config",
    "ensure_branches": "wsm_exp.study.branches", "study_key": "wsm_exp.study.branches",
    "heldout_path": "wsm_exp.study.data",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'wsm_exp.study' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
