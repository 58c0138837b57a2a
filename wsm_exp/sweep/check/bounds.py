"""Pre-flight bounds: counts positive, seeds usable, ``sweep_name`` one plain folder name, ``paths.*`` folders.

A zero batch size, a negative seed or a per-task limit of 0 would fail every variant after the
training; a sweep name like ``../x`` or ``_cache`` would write outside ``paths.sweeps`` or into the
shared cache. ``check_values`` judges a resolved config tree (pure); ``check_paths`` only stats the
disk. Both raise ConfigError with one paragraph naming the key, the value and a value that works.

Example:
    >>> check_values({"sweep_name": "duration", "seed": 0, "eval": {"batch_size": 16, "limits": {}}})
    >>> check_values({"sweep_name": "../x"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.spec.schemas.ConfigError: sweep_name='../x' is not one plain folder name...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsm_exp.sweep.spec.schemas import ConfigError

SEED_MAX = 2**32 - 1  # lm-eval seeds numpy with eval.seed, and numpy takes 0 .. 2**32 - 1 only
SEEDS = ("seed", "eval.seed", "merge.order_seed")
POSITIVE = (  # counts where 0 or less cannot work (None, where allowed, means "not set")
    "eval.batch_size", "eval.limit", "series.tokens_per_step", "series.wsd_decay_steps",
    "train.seq_len", "train.batch_size", "train.switch_step", "train.branch_steps", "train.save_every",
    "train.threads", "model.hidden_size", "model.intermediate_size", "model.num_hidden_layers",
    "model.num_attention_heads", "model.num_key_value_heads", "data.vocab_size", "data.max_chars_general",
    "data.max_chars_anneal", "data.heldout_docs", "merge.branch_batch_size", "merge.branch_steps",
)
NON_NEGATIVE = ("eval.num_fewshot", "series.branch_start", "train.warmup_steps", "merge_stage_tasks")
FRACTIONS = {  # analysis.* margins and cut-offs: (lowest, highest, whether the ends are allowed)
    "analysis.margin_overall": (0.0, float("inf"), True), "analysis.margin_bpb": (0.0, float("inf"), True),
    "analysis.r2_collapse": (0.0, 1.0, True), "analysis.power": (0.0, 1.0, False),
}
PATHS = ("sweeps", "cache", "studies", "merges", "scores", "sweep_dir")
CACHES = ("cache", "studies", "merges", "scores")
NAME_BYTES = 255  # the longest file name common file systems take


def check_values(tree: dict[str, Any]) -> None:
    """Refuse the first count, seed or sweep name out of bounds in a resolved config tree (keys absent: skipped).

    >>> check_values({"eval": {"limits": {"wsm_piqa": 0}}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.spec.schemas.ConfigError: eval.limits.wsm_piqa=0: must be a whole number of at least 1...
    """
    if "sweep_name" in tree:
        check_sweep_name(tree["sweep_name"])
    for key in SEEDS:
        value = _get(tree, key)
        if value is not None and not (isinstance(value, int) and 0 <= value <= SEED_MAX):
            raise ConfigError(f"{key}={value}: a seed must be a whole number from 0 to {SEED_MAX} (numpy, which "
                              f"seeds lm-eval's sampling and the training data, takes no other); e.g. {key}=0.")
    limits = _get(tree, "eval.limits") or {}
    counts = [(key, _get(tree, key), 1) for key in POSITIVE] + [(key, _get(tree, key), 0) for key in NON_NEGATIVE]
    counts += [(f"eval.limits.{task}", value, 1) for task, value in sorted(limits.items())]
    for key, value, least in counts:
        if value is not None and not (isinstance(value, int) and value >= least):
            what = "at least 1 (0 or less cannot work)" if least else "0 or more"
            rest = (", or leave it out of eval.limits." if key.startswith("eval.limits.") else
                    ", or null to leave it unset." if key == "eval.limit" or key.startswith(("series.", "merge."))
                    else ", or drop the override for the default.")
            raise ConfigError(f"{key}={value}: must be a whole number of {what}. Give e.g. {key}={max(least, 1)}{rest}")
    for key, (low, high, ends) in FRACTIONS.items():
        value = _get(tree, key)
        inside = value is not None and (low <= value <= high if ends else low < value < high)
        if value is not None and not inside:
            span = f"from {low:g} to {high:g}" if ends else f"strictly between {low:g} and {high:g}"
            raise ConfigError(f"{key}={value}: must be a number {span} (docs/analysis.md); drop the override for "
                              "the default.")


def check_sweep_name(name: Any) -> None:
    """``sweep_name`` names one folder under ``paths.sweeps``: not empty, no path separator, not ``.``/``..``,
    not hidden (temporaries are) and not ``_``-prefixed (reserved for the shared cache, ``_cache``).

    >>> check_sweep_name("duration-seeds")
    >>> check_sweep_name("_cache")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.spec.schemas.ConfigError: sweep_name='_cache' is not one plain folder name: ... reserved ...
    """
    text = "" if name is None else str(name)
    why = None
    if not text.strip():
        why = "it is empty, so the sweep folder would be paths.sweeps itself, which holds the shared cache"
    elif any(sep in text for sep in ("/", "\\")) or text in (".", ".."):
        why = "it holds a path (/, \\, . or ..), so the sweep folder would lie outside paths.sweeps"
    elif text.startswith("_"):
        why = "names starting with _ are reserved for the shared cache under paths.sweeps (_cache)"
    elif text.startswith("."):
        why = "hidden names are those of temporaries, which a later run may delete"
    elif not text.isprintable() or len(text.encode()) > NAME_BYTES:
        why = f"it holds control characters or is longer than {NAME_BYTES} bytes"
    if why:
        raise ConfigError(f"sweep_name={text!r} is not one plain folder name: {why}. Give a name like "
                          "sweep_name=duration-seeds (letters, digits, - and _, not starting with _ or .).")


def check_paths(paths: dict[str, Any]) -> None:
    """Each ``paths.*`` that exists (or its nearest existing parent) is a folder; the sweep folder is neither
    the cache nor inside it, nor holds ``paths.sweeps``. Reads only file types, writes nothing.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> check_paths({"sweeps": root, "cache": root + "/_cache", "sweep_dir": root + "/grid"})
    >>> check_paths({"sweeps": root, "cache": root + "/_cache", "sweep_dir": root + "/_cache/x"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.spec.schemas.ConfigError: paths.sweep_dir=... lies inside paths.cache=...
    """
    for key in PATHS:
        if not paths.get(key):
            continue
        path = Path(str(paths[key])).expanduser()
        existing = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
        if existing is not None and not existing.is_dir():
            where = "is" if existing == path else f"lies under {existing}, which is"
            raise ConfigError(f"paths.{key}={path} {where} a file, not a folder, so nothing can be written there. "
                              f"Point paths.{key} at a folder (or a path where one can be made), or move the file.")
    if not paths.get("sweep_dir"):
        return
    sweep_dir = Path(str(paths["sweep_dir"])).expanduser().resolve()
    for key in CACHES:
        if paths.get(key):
            cache = Path(str(paths[key])).expanduser().resolve()
            if sweep_dir == cache or cache in sweep_dir.parents:
                raise ConfigError(f"paths.sweep_dir={sweep_dir} lies inside paths.{key}={cache}: deleting the sweep "
                                  "folder (the way to start a sweep over) would delete cached results of every "
                                  "sweep. Give the sweep its own folder (sweep_name=..., or paths.sweep_dir=...).")
    if paths.get("sweeps"):
        sweeps = Path(str(paths["sweeps"])).expanduser().resolve()
        if sweep_dir == sweeps or sweep_dir in sweeps.parents:
            raise ConfigError(f"paths.sweep_dir={sweep_dir} holds paths.sweeps={sweeps}, the folder of every sweep "
                              "and the shared cache. Give the sweep its own folder under it (sweep_name=...).")


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_config(cfg: Any) -> None:
    """``check_values`` and ``check_paths`` of a composed job (a DictConfig).

    >>> from omegaconf import OmegaConf
    >>> check_config(OmegaConf.create({"sweep_name": "grid", "seed": -1, "paths": {}}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.sweep.spec.schemas.ConfigError: seed=-1: a seed must be a whole number from 0 to 4294967295...
    """
    from omegaconf import OmegaConf

    tree = {key: OmegaConf.select(cfg, key) for key in ("sweep_name", "seed", "merge_stage_tasks")}
    tree.update({group: OmegaConf.to_container(cfg[group], resolve=True)
                 for group in ("eval", "series", "train", "model", "data", "merge", "analysis") if group in cfg})
    check_values(tree)
    check_paths(OmegaConf.to_container(cfg.paths, resolve=True))
