"""``python -m wsm_exp +sweep=<name>``: the Hydra entry point; one job = one merge variant.

Before Hydra launches anything, every job of the command is composed with Hydra's compose API and
checked (wsm_exp/sweep/check/gate.py); a mistake prints one paragraph and exits 2, and ``plan=true``
prints the plan and stops. Nothing is written in either case.

Examples:
    python -m wsm_exp +sweep=duration                 # the embedded tiny study, end to end
    python -m wsm_exp +sweep=duration plan=true       # what it would train, merge, evaluate; cached parts
    python -m wsm_exp +sweep=interval series.path=/ckpts/run series.tokens_per_step=4096 eval=benchmarks
"""

import wsm_exp  # noqa: F401  (offline defaults before hydra/torch/wandb import anything)

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from wsm_exp.sweep.spec.schemas import ConfigError, register_schemas

CONF = Path(__file__).resolve().parents[1] / "conf"
PASSTHROUGH = ("-m", "--multirun")  # any other flag (--cfg, --help, -cd, ...) is Hydra's: the callbacks check then

register_schemas()  # and the ${cwd:} resolver: the launch folder, resolvable before Hydra sets its runtime info


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def hydra_main(cfg: DictConfig) -> list[str]:
    """Run one variant and its baselines; results, report and exit status come from the callbacks."""
    from wsm_exp.sweep.run.job import run_job

    return run_job(cfg)


def main() -> None:
    """Pre-flight (or the plan), then Hydra."""
    from wsm_exp.sweep.check import gate

    args = sys.argv[1:]
    if all(a in PASSTHROUGH or not a.startswith("-") for a in args):
        try:
            jobs = gate.run_command(args, config_dir=CONF)
        except ConfigError as err:
            gate.refuse(err)
        if jobs is None:
            return  # plan=true: printed, nothing written
    hydra_main()


if __name__ == "__main__":
    main()
