"""Tiny seeded checkpoint series for merge tests: real transformers models saved as safetensors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

WSM_MERGE = str(Path(sys.executable).parent / "wsm-merge")  # the installed command, as a user runs it


def cli(*args) -> subprocess.CompletedProcess:
    """Run ``wsm-merge`` with ``args`` (paths allowed); captured text output."""
    return subprocess.run([WSM_MERGE, *map(str, args)], capture_output=True, text=True)


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def updates_series(root: Path, steps: list[int], *, seed: int = 0, dtype=torch.float32, shard: str | None = None):
    """θ_{j+1} = θ_j − g_j with seeded update vectors g_j; returns (θ_0 state, [g_j ...])."""
    model = tiny_model(seed).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    updates = []
    for j, step in enumerate(steps):
        if j:
            g = {k: (torch.randn(v.shape, generator=gen) * 0.01).to(dtype) for k, v in theta0.items()}
            updates.append(g)
            with torch.no_grad():
                for k, p in model.state_dict().items():
                    p.sub_(g[k])
        kwargs = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(root / f"step_{step}", **kwargs)
    (root / "series.json").write_text(json.dumps({"tokens_per_step": 1000, "branch": "wsm"}))
    return theta0, updates


def file_series(root: Path, steps: list[int], *, seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """A series of single .safetensors files (no config), with a non-float tensor."""
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    states = {}
    for step in steps:
        state = {"w": torch.randn(8, 4, generator=gen), "b": torch.randn(4, generator=gen),
                 "position_ids": torch.arange(6)}
        save_file(state, root / f"checkpoint-{step}.safetensors", metadata={"format": "pt"})
        states[step] = state
    return states


def age(path: Path, seconds: float = 60.0) -> None:
    """Backdate every file under ``path`` (identities of files modified within RACY_SECONDS are not cached)."""
    import os
    import time

    for file in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(file, (time.time() - seconds, time.time() - seconds))
