"""Fitted merge weights on real checkpoints: held-out loss of the merged model and its exact gradient in w.

``LmObjective(w)`` returns the mean next-token loss (nats per token) of ``θ_w = Σ w_i θ_i`` on the fit
documents and ``∂L/∂w_i = ⟨∇_θ L(θ_w), θ_i⟩``, with one model in memory (plus its gradient):

1. a streaming pass builds ``θ_w`` tensor by tensor from the memory-mapped safetensors files
   (headers checked by ``st_io``; no checkpoint is ever loaded whole);
2. one forward/backward over the fit sequences gives ``∇_θ L``;
3. one streaming pass takes the inner products ``⟨∇_θ L, θ_i⟩`` tensor by tensor (in float64).

``fit_window`` runs the optimiser of ``fit`` with it and returns the weights with their provenance: the
split (``heldout_split``), the settings, the loss of every step and the test-split loss before and after.
``fit_or_reuse`` keeps fits under their key (inputs' identities, held-out digest, split, settings), so a
sweep that asks again gets the stored weights without reading a checkpoint.

Example:
    >>> fitted = fit_window(window.checkpoints, "heldout.jsonl", FitConfig(steps=4))  # doctest: +SKIP
    >>> fitted.weights, fitted.provenance["losses"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import mmap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsm_exp.atomic import file_lock, write_json_atomic
from wsm_exp.keys import content_key
from wsm_exp.merging.arith import FLOAT_DTYPES, NUMPY_DTYPES, widen
from wsm_exp.merging.fit import FitConfig, fit_weights
from wsm_exp.merging.heldout_split import HeldoutSplit, split_heldout
from wsm_exp.merging.identity import checkpoint_identity
from wsm_exp.merging.series import DCP_METADATA, Checkpoint, validate_checkpoints
from wsm_exp.merging.st_io import ITEMSIZE, CheckpointError, read_header

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class FittedWeights:
    """Fitted merge weights (oldest first), the provenance a merge records, and the fit's key."""

    weights: list[float]
    provenance: dict[str, Any]

    @property
    def key(self) -> str:
        return self.provenance["key"]


def fit_key(split: HeldoutSplit, config: FitConfig, identities: Sequence[str] | None = None) -> str:
    """Key of a fit: the held-out file's digest, the split, the settings (and the inputs, when given).

    >>> import tempfile, json, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "h.jsonl"
    >>> _ = f.write_text('{"text": "a"}\\n{"text": "b"}\\n')
    >>> fit_key(split_heldout(f), FitConfig()) != fit_key(split_heldout(f), FitConfig(steps=2))
    True
    """
    record = {k: v for k, v in split.record().items() if k != "heldout"}
    return content_key({"split": record, "settings": config.settings(), "inputs": list(identities or [])})


def fit_window(checkpoints: Sequence[Checkpoint], heldout: str | Path, config: FitConfig = FitConfig(), *,
               tokenizer: str | Path | None = None, device: str = "cpu",
               on_step: Callable[[int, dict[str, Any]], None] | None = None) -> FittedWeights:
    """Fit the weights of ``checkpoints`` (oldest first) on the fit split of ``heldout``.

    ``tokenizer``: a folder with the tokenizer (default: the newest checkpoint's). ``on_step`` sees every
    evaluation (``wandb_logger(run)`` logs them to W&B)."""
    config.check()
    started = time.perf_counter()
    split = split_heldout(heldout, fit_fraction=config.fit_fraction, seed=config.seed)
    identities = [checkpoint_identity(c) for c in checkpoints]
    objective = LmObjective(checkpoints, split.fit_texts(), config, tokenizer=tokenizer, device=device)
    trace = fit_weights(objective, len(checkpoints), config, on_step)
    test = split.test_texts()
    provenance = {
        "key": fit_key(split, config, identities), "inputs": identities, "settings": config.settings(), **split.record(),
        "documents_used": len(split.fit), "fit_tokens": objective.tokens,
        "losses": trace.losses, "accepted": trace.accepted, "lrs": trace.lrs, "history": trace.history,
        "initial_weights": trace.history[0], "fit_loss_start": trace.losses[0], "fit_loss_end": trace.loss,
        "test_loss_start": objective.loss(np.array(trace.history[0]), test),
        "test_loss_end": objective.loss(np.array(trace.weights), test),
        "loss_unit": "nats per token", "evaluations": len(trace.losses),
    }
    provenance["seconds"] = round(time.perf_counter() - started, 3)
    return FittedWeights([float(x) for x in trace.weights], provenance)


def fit_or_reuse(checkpoints: Sequence[Checkpoint], heldout: str | Path, config: FitConfig, fits_dir: str | Path,
                 **options) -> FittedWeights:
    """The fit of ``checkpoints`` on ``heldout`` stored as ``<fits_dir>/<key>.json``, fitted (``fit_window``, with
    ``options``) unless it is there; a lock makes a second process wait for the first one's fit."""
    config.check()
    split = split_heldout(heldout, fit_fraction=config.fit_fraction, seed=config.seed)
    key = fit_key(split, config, [checkpoint_identity(c) for c in checkpoints])
    fits_dir = Path(fits_dir)
    fits_dir.mkdir(parents=True, exist_ok=True)
    stored = fits_dir / f"{key}.json"
    with file_lock(fits_dir / f".{key}.lock"):
        if stored.is_file():
            record = json.loads(stored.read_text())
            return FittedWeights(record["weights"], record["provenance"])
        fitted = fit_window(checkpoints, heldout, config, **options)
        write_json_atomic(stored, {"weights": fitted.weights, "provenance": fitted.provenance})
    return fitted


def wandb_logger(run) -> Callable[[int, dict[str, Any]], None]:
    """An ``on_step`` that logs each evaluation of the fit to a W&B run (anything with ``log(dict)``)."""
    def log(index: int, record: dict[str, Any]) -> None:
        run.log({"fit/evaluation": index, "fit/loss": record["loss"], "fit/best_loss": record["best_loss"],
                 "fit/lr": record["lr"], "fit/accepted": int(record["accepted"]),
                 **{f"fit/w{i}": w for i, w in enumerate(record["weights"])}})

    return log


class LmObjective:
    """Loss of the merged model on ``texts`` and its exact gradient in the weights (see the module docstring)."""

    def __init__(self, checkpoints: Sequence[Checkpoint], texts: Sequence[str], config: FitConfig, *,
                 tokenizer: str | Path | None = None, device: str = "cpu"):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.checkpoints, self.config, self.device = list(checkpoints), config, torch.device(device)
        if not self.checkpoints:
            raise CheckpointError("No checkpoints to fit merge weights for: select a window of at least one.")
        newest = self.checkpoints[-1]
        if any(c.files[0].name == DCP_METADATA for c in self.checkpoints):
            raise CheckpointError(f"{newest.path}: fitted merge weights read Hugging Face safetensors checkpoints, "
                                  "not DCP folders. Convert the window to safetensors (or merge it with --hf-config).")
        if not (newest.path / "config.json").is_file():
            raise CheckpointError(f"{newest.path} has no config.json: fitting merge weights runs the model, so each "
                                  "checkpoint must be a Hugging Face folder (config.json beside the safetensors).")
        self.layout = validate_checkpoints(self.checkpoints)
        self.maps = [_tensor_maps(c) for c in self.checkpoints]
        model_config = AutoConfig.from_pretrained(newest.path)
        self.model = AutoModelForCausalLM.from_config(model_config).to(self.device, DTYPES[config.dtype])
        self.model.eval()  # no dropout: the loss is a function of w alone
        self.params = self._match_names()
        source = Path(tokenizer) if tokenizer is not None else newest.path
        try:
            tok = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"No tokenizer could be loaded from {source} ({err}). Save the tokenizer beside "
                                  "the checkpoints, or pass the folder that holds it (--tokenizer).") from None
        limit = getattr(model_config, "max_position_embeddings", None) or config.seq_len
        self.tokenizer, self.seq_len = tok, min(config.seq_len, limit)
        self.sequences = _sequences(tok, texts, self.seq_len)
        self.tokens = _count(self.sequences)

    def __call__(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        self._build(w)
        self.model.zero_grad(set_to_none=True)
        loss = self._loss(self.sequences, backward=True)
        return loss, self._inner_products()

    def loss(self, w: np.ndarray, texts: Sequence[str] | None = None) -> float:
        """The loss at ``w`` alone (no gradient): one build pass and one forward; on ``texts`` if given (e.g.
        the test split), else on the fit texts."""
        sequences = self.sequences if texts is None else _sequences(self.tokenizer, texts, self.seq_len)
        self._build(w)
        with torch.no_grad():
            return self._loss(sequences, backward=False)

    def _build(self, w: np.ndarray) -> None:
        """θ_w into the model, tensor by tensor (pass 1)."""
        dtype = NUMPY_DTYPES["F64"] if self.config.dtype == "float64" else NUMPY_DTYPES["F32"]
        with torch.no_grad():
            for name, (st, shape) in self.layout.items():
                target = self.params[name]
                if st not in FLOAT_DTYPES:
                    target.copy_(torch.from_numpy(self._read(-1, name).copy()).view(shape))
                    continue
                acc = np.zeros(_numel(shape), dtype)
                for i, weight in enumerate(w):
                    acc += float(weight) * self._float(i, name, dtype)
                target.copy_(torch.from_numpy(acc).view(shape))

    def _inner_products(self) -> np.ndarray:
        """⟨∇_θ L, θ_i⟩ for every checkpoint i, in float64 (pass 2)."""
        grad = np.zeros(len(self.checkpoints))
        for name, (st, _) in self.layout.items():
            g = self.params[name].grad
            if st not in FLOAT_DTYPES or g is None:
                continue
            g = g.detach().to("cpu", torch.float64).numpy().ravel()
            for i in range(len(self.checkpoints)):
                grad[i] += float(np.dot(g, self._float(i, name, np.dtype(np.float64))))
        return grad

    def _loss(self, sequences: list[list[int]], *, backward: bool) -> float:
        total, tokens = 0.0, _count(sequences)
        for batch in batches(sequences, self.config.batch_sequences):
            width = max(len(s) for s in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            if backward:
                (nll / tokens).backward()
            total += float(nll.detach())
        return total / tokens

    def _read(self, index: int, name: str) -> np.ndarray:
        mapped, offset, st, numel = self.maps[index][name]
        dtype = NUMPY_DTYPES.get(st, np.dtype(np.uint8))
        return np.frombuffer(mapped, dtype, numel if st in NUMPY_DTYPES else numel * ITEMSIZE[st], offset)

    def _float(self, index: int, name: str, dtype: np.dtype) -> np.ndarray:
        raw = self._read(index, name)
        st = self.layout[name][0]
        return widen(raw, st, np.empty(raw.size, dtype))

    def _match_names(self) -> dict[str, torch.Tensor]:
        """Model tensors by checkpoint tensor name; every model parameter must be set by some tensor."""
        state = self.model.state_dict(keep_vars=True)
        unknown = [n for n in self.layout if n not in state]
        if unknown:
            raise CheckpointError(f"Tensor {unknown[0]!r} of {self.checkpoints[-1].path} is not a tensor of the model "
                                  "its config.json describes. Fit weights on checkpoints saved by that model "
                                  "(save_pretrained).")
        covered = {state[n].data_ptr() for n in self.layout}
        missing = [n for n, p in self.model.named_parameters() if p.data_ptr() not in covered]
        if missing:
            raise CheckpointError(f"Parameter {missing[0]!r} of the model is missing from {self.checkpoints[-1].path}: "
                                  "the checkpoints do not hold the whole model. Fit on complete checkpoints.")
        return {n: state[n] for n in self.layout}


def _sequences(tok, texts: Sequence[str], seq_len: int) -> list[list[int]]:
    """Each document as token ids (BOS first when the tokenizer has one), cut into sequences of at most
    ``seq_len`` that overlap by one token, so every token but a document's first is predicted exactly once."""
    sequences = []
    for text in texts:
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        if tok.bos_token_id is not None:
            ids = [tok.bos_token_id, *ids]
        for start in range(0, max(len(ids) - 1, 0), seq_len - 1):
            chunk = ids[start:start + seq_len]
            if len(chunk) > 1:
                sequences.append(chunk)
    return sequences


def batches(sequences: Sequence[list[int]], size: int) -> list[list[list[int]]]:
    """``sequences`` in batches of ``size``, longest first: each batch pads to its longest member, so grouping
    similar lengths computes few padding tokens (a document's last piece is short, the others full), and the one
    short batch holds the shortest. The loss is a sum over tokens, so the order changes nothing but the rounding.

    >>> [[len(s) for s in b] for b in batches([[1] * 9, [1] * 2, [1] * 9, [1] * 3, [1] * 5], 2)]
    [[9, 9], [5, 3], [2]]
    """
    ordered = sorted(sequences, key=len, reverse=True)  # stable: the same batches every call
    return [ordered[start:start + size] for start in range(0, len(ordered), size)]


def _count(sequences: list[list[int]]) -> int:
    """Predicted tokens of ``sequences``; none is an error (nothing to measure the loss on)."""
    count = sum(len(s) - 1 for s in sequences)
    if not count:
        raise CheckpointError("The held-out documents tokenize to no predictable token; give longer documents.")
    return count


def _tensor_maps(checkpoint: Checkpoint) -> dict[str, tuple[mmap.mmap, int, str, int]]:
    """tensor name -> (its file mapped read-only, offset of its data, dtype, element count)."""
    maps = {}
    for file in checkpoint.files:
        header = read_header(file)
        with open(file, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        for name, info in header.tensors.items():
            maps[name] = (mapped, header.data_start + info.begin, info.dtype, _numel(info.shape))
    return maps


def _numel(shape) -> int:
    return math.prod(shape)
