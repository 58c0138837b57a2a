"""A DCP series paired with the Hugging Face config and tokenizer that make its models evaluable.

DCP checkpoints (torch.distributed.checkpoint: torchtitan, OLMo-core) hold weights only; lm-eval
needs a Hugging Face folder. With ``series.hf_config=/hf/folder`` (its config.json and tokenizer
files), every merge of a DCP series is written as a Hugging Face folder with those files beside the
weights, and a raw DCP checkpoint is converted the same way (a merge of one checkpoint with weight
1: exact for every float dtype). The outputs are cached by content under
``<paths.merges>/hf-<digest of the config files>/<plan key>``, so another config never reuses them,
and evaluated under a model hash that joins the plan key with that digest.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}")
    >>> merges_dir(pathlib.Path("/cache/merges"), folder).name == "hf-" + config_digest(folder)
    True
    >>> merges_dir(pathlib.Path("/cache/merges"), None)   # Hugging Face series: the cache itself
    PosixPath('/cache/merges')
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

from wsm_exp.merging.dcp_io import is_dcp
from wsm_exp.merging.plan import MergePlan, build_plan
from wsm_exp.merging.ckpt_files import is_side_file
from wsm_exp.merging.series import Checkpoint
from wsm_exp.sweep.config import ConfigError

DIGEST_CHARS = 16


def config_digest(hf_config: Path) -> str:
    """Content digest of the folder's files that go beside merged weights (config and tokenizer; weight
    files of any format are never read), cached per file by path, size and modification time."""
    digest = hashlib.sha256()
    for item in sorted(Path(hf_config).iterdir()):
        if is_side_file(item):
            stat = item.stat()
            digest.update(item.name.encode() + b"\0" + _file_digest(str(item), stat.st_size, stat.st_mtime_ns))
    return digest.hexdigest()[:DIGEST_CHARS]


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> bytes:
    """One side file's sha256 (``size`` and ``mtime_ns`` key the cache: an edited file is read again)."""
    return hashlib.sha256(Path(path).read_bytes()).digest()


def merges_dir(merges: Path, hf_config: Path | None) -> Path:
    """Where models written with ``hf_config`` are cached: one folder per config content (``merges``
    itself for models that carry their own config, ``hf_config`` None)."""
    return Path(merges) if hf_config is None else Path(merges) / f"hf-{config_digest(hf_config)}"


def model_hash(plan_key: str, hf_config: Path) -> str:
    """The scores cache's key of a model written with ``hf_config`` (same weights, other tokenizer: other key)."""
    return hashlib.sha256(f"{plan_key}:{config_digest(hf_config)}".encode()).hexdigest()[:len(plan_key)]


def conversion_plan(checkpoint: Checkpoint) -> MergePlan:
    """A raw checkpoint as a merge of one with weight 1 (its tensors unchanged, in their own dtype)."""
    return build_plan([checkpoint], weights=[1.0], normalize=False)


def paired_config(hf_config: str | Path | None, checkpoints: Sequence[Checkpoint]) -> Path | None:
    """``hf_config`` when these checkpoints are DCP (their models need it), else None."""
    return Path(hf_config) if hf_config and checkpoints and is_dcp(checkpoints[0].path) else None


def check_pairing(hf_config: str | None, series: dict[str, Sequence[Checkpoint]]) -> None:
    """Refuse a DCP series without ``series.hf_config``, a config folder without config.json, and a
    config given for series that are all Hugging Face folders (which carry their own). ``series`` holds
    the series that loaded; when none did, their own errors are the ones to report."""
    dcp = [branch for branch, checkpoints in series.items() if checkpoints and is_dcp(checkpoints[0].path)]
    if dcp and not hf_config:
        first = series[dcp[0]][0].path
        raise ConfigError(
            f"The {dcp[0]} series holds DCP checkpoints (torch.distributed.checkpoint, e.g. {first}), which carry "
            "no model config or tokenizer, so its merges cannot be evaluated. Give the Hugging Face folder of this "
            "model as series.hf_config=/path/to/hf (its config.json and tokenizer files; the weights are not read), "
            "e.g. the folder torchtitan's or OLMo-core's HF export writes, or the model's hub snapshot.")
    if not hf_config:
        return
    if not (Path(hf_config) / "config.json").is_file():
        raise ConfigError(
            f"series.hf_config={hf_config!r} has no config.json. Point it at the Hugging Face folder of the model "
            "your DCP checkpoints are (config.json and the tokenizer files), e.g. an HF export of one checkpoint.")
    if not dcp and any(series.values()):
        raise ConfigError(
            f"series.hf_config is for DCP series, but the checkpoints under {sorted(series)} are Hugging Face "
            "folders that carry their own config and tokenizer. Drop series.hf_config.")
    for branch in dcp:
        check_names(str(hf_config), str(series[branch][0].path))


@functools.lru_cache(maxsize=8)
def check_names(hf_config: str, checkpoint: str) -> None:
    """Refuse a DCP checkpoint that lacks a weight of the Hugging Face model (it would load as random values).

    The model is built on the meta device from ``hf_config``'s config.json (no memory, no weights read);
    tied weights (``lm_head`` with ``tie_word_embeddings``) need not be saved; extra tensors are ignored.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from wsm_exp.merging.dcp_io import DcpCheckpoint

    try:
        config = AutoConfig.from_pretrained(hf_config)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, OSError, KeyError) as err:
        raise ConfigError(f"series.hf_config={hf_config!r}: its config.json does not describe a causal LM "
                          f"transformers can build ({type(err).__name__}: {err}). Point it at the Hugging Face "
                          "folder of the model your DCP checkpoints are.") from None
    tied = set(getattr(model, "_tied_weights_keys", None) or ()) if config.tie_word_embeddings else set()
    names = set(DcpCheckpoint.open(Path(checkpoint)).keys())
    missing = sorted(set(model.state_dict()) - tied - names)
    if missing:
        raise ConfigError(
            f"The DCP checkpoint {checkpoint} lacks {len(missing)} weight(s) of the Hugging Face model of "
            f"series.hf_config={hf_config!r}, e.g. {missing[:3]} (it holds e.g. {sorted(names)[:3]}); its merges "
            "would load with random values there. Save or rename the tensors under the Hugging Face names "
            "(your framework's HF conversion does this), or point series.hf_config at the matching model.")


__all__ = ["check_names", "check_pairing", "config_digest", "conversion_plan", "merges_dir", "model_hash",
           "paired_config"]
