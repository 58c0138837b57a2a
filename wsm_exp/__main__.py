"""``python -m wsm_exp +sweep=<name>``: the Hydra entry point; one job = one merge variant.

Examples:
    python -m wsm_exp +sweep=duration                 # the embedded tiny study, end to end
    python -m wsm_exp +sweep=interval series.path=/ckpts/run series.tokens_per_step=4096 eval=benchmarks
"""

import wsm_exp  # noqa: F401  (offline defaults before hydra/torch/wandb import anything)

import os

import hydra
from omegaconf import DictConfig, OmegaConf

# ${cwd:} in conf/config.yaml: the launch folder, resolvable before Hydra sets its runtime info
OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> list[str]:
    """Run one variant and its baselines; results, report and exit status come from the callbacks."""
    from wsm_exp.sweep.job import run_job

    return run_job(cfg)


if __name__ == "__main__":
    main()
