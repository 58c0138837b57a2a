"""Composing a command's jobs with Hydra, as the basic sweeper will launch them (no checks, no work).

The jobs are the basic sweeper's: the sweep file's params, then the command line, which wins; their
cartesian product. Each is composed with ``hydra.compose`` exactly as the job will be; Hydra's and
OmegaConf's composition errors come back as one ConfigError paragraph naming the key and the fix.

Example:
    >>> expand_jobs({"merge.duration": "32,64"}, ["+sweep=duration", "seed=0,1"])  # doctest: +NORMALIZE_WHITESPACE
    [['merge.duration=32', '+sweep=duration', 'seed=0'], ['merge.duration=32', '+sweep=duration', 'seed=1'],
     ['merge.duration=64', '+sweep=duration', 'seed=0'], ['merge.duration=64', '+sweep=duration', 'seed=1']]
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsm_exp.merging.fit import MONOTONE_MEANING
from wsm_exp.sweep.spec.schemas import ConfigError, schemas

VALUE_HELP = {  # keys whose values changed meaning: what to write now (the generic fix names only the type)
    "merge.fit.monotone": f"It is a switch now: write merge.fit.monotone=true, or false (the default). {MONOTONE_MEANING}.",
}


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
        fix = VALUE_HELP.get(full_key.group(1), "Give a value of the key's type (docs/config.md lists every key "
                                                "with its type and default).")
        return f"{full_key.group(1)}: {first}. {fix}"
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line)


def _allowed_keys(parent: str) -> list[str]:
    run = schemas()["run"]
    nested = {**schemas(), **{k: v for k, v in typing.get_type_hints(run).items() if dataclasses.is_dataclass(v)}}
    return sorted(getattr(nested.get(parent, run), "__dataclass_fields__"))
