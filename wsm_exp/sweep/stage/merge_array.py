"""The sweep's merge stage as one Slurm job array of P tasks over disjoint output shards.

With ``hydra/launcher=slurm`` and ``merge_stage_tasks=P`` the stage calls ``merge_plans`` with
``workers=P`` and a ``SlurmArray`` as its executor: the output shards of every merge are split into
P groups (whole shards, balanced by bytes, as ``wsm-merge --workers P``), and array task ``i`` runs
the merger's worker on group ``i``: it reads its shards' tensors from every input checkpoint, writes
those shard files into the merges' hidden temporary folders (beside the cache, on the shared
filesystem) and returns their digests. The launching process waits for the whole array, then
writes each merge's index and merge.json once and publishes it, exactly as the one-process stage.
A task that fails or ends without a result (``scancel``, a limit) fails the stage with its Slurm id
and log file; nothing is published, and the variants' jobs merge their own variants. The tasks ask
for what the launcher's jobs ask for (``hydra.launcher.cpus_per_task``, ``mem_gb``,
``timeout_min``, ...) except GPUs: merging runs on CPUs.

Example:
    >>> stage_executor({"merge_stage_tasks": 0}) is None   # merge in the launching process
    True
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")  # a traceback's last line
GPU_KEYS = ("gpus_per_node", "gpus_per_task", "gres")  # launcher settings a merge task never uses


class MergeArrayError(RuntimeError):
    """A task of the merge stage's Slurm array failed or ended without a result; nothing was published."""


def slurm_executor(params: Mapping[str, Any]):
    """A submitit Slurm executor from ``hydra.launcher`` settings (conf/hydra/launcher/slurm.yaml).

    Keys submitit shares between clusters (``timeout_min``, ``mem_gb``, ...) keep their names; the
    rest become ``slurm_<key>``, as hydra-submitit-launcher does.
    """
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = {k: v for k, v in params.items() if k != "_target_"}
    executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout", 0))
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    return executor


class SlurmArray:
    """``map(fn, *iterables)`` as one Slurm job array: one task per item, waited for to the end.

    The executor ``merge_plans`` takes; ``job_id`` is the array's id once submitted.
    """

    def __init__(self, executor):
        self.executor, self.job_id = executor, None

    def map(self, fn: Callable, *iterables) -> list:
        """``[fn(*args) for args in zip(*iterables)]``, each call a task of one array; raises
        ``MergeArrayError`` naming every task that failed, after all have ended."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        jobs = self.executor.map_array(fn, *iterables)
        self.job_id = jobs[0].job_id.split("_")[0]
        log.info("merge stage: submitted Slurm job array %s (%d tasks)", self.job_id, len(jobs))
        try:
            for job in jobs:
                job.wait()
        except BaseException:  # the driver interrupted: no task may go on writing into folders about to go
            for job in jobs:
                job.cancel(check=False)
            raise
        results, failures = [], []
        for job in jobs:
            try:
                results.append(job.result())
            except FailedJobError as err:  # a subclass of UncompletedJobError: the task raised
                failures.append(f"task {job.job_id} failed: {_last_error_line(str(err))} "
                                f"(its log: {job.paths.stderr})")
            except UncompletedJobError:
                failures.append(f"task {job.job_id} ended without a result (state {job.state}; "
                                f"its log: {job.paths.stderr})")
        if failures:
            raise MergeArrayError(
                f"The merge stage's Slurm job array {self.job_id} did not complete: {'; '.join(failures)}. "
                "Nothing was published in the merge cache; the variants' jobs merge their own variants instead. "
                "Fix the cause named in the log before the next sweep (merges already published are reused).")
        return results


def stage_executor(config: DictConfig | Mapping[str, Any]) -> SlurmArray | None:
    """The merge stage's executor: a Slurm array when ``merge_stage_tasks`` > 1 under the Slurm launcher;
    None otherwise (``merge_plans`` then uses ``merge_stage_tasks`` local processes, or one)."""
    tasks = int(OmegaConf.select(config, "merge_stage_tasks", default=0) if isinstance(config, DictConfig)
                else config.get("merge_stage_tasks", 0))
    launcher = OmegaConf.select(config, "hydra.launcher") if isinstance(config, DictConfig) else None
    if tasks < 2 or launcher is None or "submitit_folder" not in launcher:
        return None
    params = {k: v for k, v in OmegaConf.to_container(launcher, resolve=True).items() if k not in GPU_KEYS}
    params["name"] = f"{params.get('name') or 'wsm'}-merge"
    return SlurmArray(slurm_executor(params))


def _last_error_line(message: str) -> str:
    """The exception line of a traceback submitit hands back as text (``MergeError: Tensor ...``), also
    for an exception without a message (``MemoryError``).

    >>> _last_error_line("Traceback:\\n  File x\\nMemoryError\\nYou can check full logs at paths:")
    'MemoryError'
    """
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith("-")]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    return errors[-1] if errors else (lines[-1] if lines else message)


__all__ = ["MergeArrayError", "SlurmArray", "slurm_executor", "stage_executor"]
