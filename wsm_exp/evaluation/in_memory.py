"""Models that exist only in memory, for the harness: a merge straight from the merger, no file written.

``ModelInMemory`` is what ``harness.evaluate`` takes in place of a folder: the weights as torch
tensors, the folder of its config.json and tokenizer, and its content identity (which keys the score
cache, so it must be the identity the written model would have). ``from_merge`` wraps a
``memory_sink.MemoryMerge`` without copying a byte; ``build_model`` builds the Hugging Face model the
way ``from_pretrained`` does for a folder (same loading code, weights cast to the evaluation dtype).

Example:
    >>> from wsm_exp.merging.memory_sink import merge_in_memory                        # doctest: +SKIP
    >>> with merge_in_memory(plan) as merged:                                           # doctest: +SKIP
    ...     scores = evaluate(from_merge(merged), suite, cache_dir="scores").scores
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from wsm_exp.merging.memory_sink import MemoryMerge

TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool}


@dataclass(frozen=True)
class ModelInMemory:
    """Weights in memory, the folder with their config.json and tokenizer, and their content identity."""

    state: dict[str, torch.Tensor]
    folder: Path
    identity: str

    def __str__(self) -> str:
        return f"<in-memory model {self.identity[:12]}, config from {self.folder}>"


def from_merge(merged: MemoryMerge) -> ModelInMemory:
    """The merge's buffers as torch tensors (views, no copy where the dtype's alignment allows)."""
    state = {}
    for name, (st_dtype, shape, data) in merged.arrays().items():
        dtype = TORCH_DTYPES[st_dtype]
        raw = torch.from_numpy(data)
        try:
            state[name] = raw.view(dtype).reshape(shape)
        except RuntimeError:  # an offset the dtype's size does not divide (mixed dtypes in one shard)
            state[name] = raw.clone().view(dtype).reshape(shape)
    return ModelInMemory(state, merged.folder, merged.identity)


def build_model(model: ModelInMemory, dtype: str, device: str):
    """The Hugging Face causal LM of ``model`` in ``dtype`` on ``device``, in eval mode (tied weights tied)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(model.folder)
    built = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)].from_pretrained(None, config=config, state_dict=model.state,
                                                                      dtype=getattr(torch, dtype))
    return built.to(device).eval()
