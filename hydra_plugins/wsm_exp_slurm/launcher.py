"""hydra-submitit-launcher's Slurm launcher, except that a job ending without a result ends no sweep.

The stock launcher waits for the jobs in order and raises at the first one that ended without a
result (cancelled with ``scancel``, killed, past its time or memory limit): the jobs after it are
no longer waited for and the end-of-sweep callback never runs. This one waits for every job, logs
each lost one (its Slurm id, state and log file) and lets the sweep end normally: the end-of-sweep
callback records the variants left without a result as failed rows, and rerunning the same command
redoes them. Selected by ``_target_`` in conf/hydra/launcher/slurm.yaml, so
``python -m wsm_exp +sweep=duration hydra/launcher=slurm`` uses it; docs/cluster.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as StockSlurmLauncher

log = logging.getLogger(__name__)


class SlurmLauncher(StockSlurmLauncher):
    """Submit the sweep as one Slurm job array; wait for every job, tolerating lost ones."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from wsm_exp.sweep.stage.merge_array import slurm_executor

        assert self.config is not None
        executor = slurm_executor(self.params)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        numbers = range(initial_job_idx, initial_job_idx + len(job_overrides))
        for number, overrides in zip(numbers, job_overrides):
            log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
        state = Singleton.get_state()
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(numbers),
                                  list(numbers), [f"job_id_for_{n}" for n in numbers], [state] * len(numbers))
        log.info(f"Submitted Slurm job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} jobs)")
        return [_outcome(job, number, overrides) for job, number, overrides in zip(jobs, numbers, job_overrides)]


def _outcome(job, number: int, overrides: Sequence[str]) -> JobReturn:
    """The job's JobReturn; for a job that ended without a result, a completed one with no value."""
    from submitit.core.utils import UncompletedJobError

    try:
        return job.results()[0]
    except UncompletedJobError:
        log.error(f"Slurm job {job.job_id} (#{number} above) ended without a result "
                  f"(state {job.state}); its variants become failed rows, and rerunning the same command "
                  f"redoes them. Its log: {job.paths.stderr}")
        return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=[])
