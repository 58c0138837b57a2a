"""wsm-exp: can averaging constant-LR checkpoints replace learning-rate decay?

Importing the package sets offline defaults for Hugging Face and W&B *before* those libraries
are imported anywhere in the process, so nothing reaches for the network. Users can still
override each variable in their environment.

Example:
    >>> import wsm_exp
    >>> import os; os.environ["WANDB_MODE"] in {"offline", "disabled", "online"}
    True
"""

import os as _os

__version__ = "0.1.0"

_OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # never contact the model hub: checkpoints are local folders
    "HF_DATASETS_OFFLINE": "1",  # task data comes from installed packages, not the datasets hub
    "TRANSFORMERS_OFFLINE": "1",  # same for older transformers code paths
    "TOKENIZERS_PARALLELISM": "false",  # avoid fork warnings under Hydra launchers
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # per-file load bars would drown the sweep's own progress
    "WANDB_MODE": "offline",  # runs are written locally; `wandb sync` uploads them later
    "WANDB_SILENT": "true",  # keep sweep logs readable
    "WANDB_DISABLE_GIT": "true",  # no git probing per run
    "WANDB_DISABLE_CODE": "true",  # do not snapshot source files per run
}
for _key, _value in _OFFLINE_DEFAULTS.items():
    _os.environ.setdefault(_key, _value)
