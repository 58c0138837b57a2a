"""Tiny checkpoint series with a tokenizer and held-out text, for the fitted-weights tests (real HF folders)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from wsm_exp.study.tokenizer import train_tokenizer

WORDS = ("the river runs past the old mill and the town keeps its bread in the cold stone house while "
         "children count the boats that carry grain to the sea every morning before the bells ring").split()


def documents(count: int, seed: int = 0) -> list[str]:
    """Seeded pseudo-sentences over a small vocabulary (the tokenizer's training text, and held-out text)."""
    gen = torch.Generator().manual_seed(seed)
    docs = []
    for _ in range(count):
        idx = torch.randint(len(WORDS), (int(torch.randint(20, 60, (1,), generator=gen)),), generator=gen)
        docs.append(" ".join(WORDS[i] for i in idx.tolist()).capitalize() + ".")
    return docs


def heldout_file(path: Path, count: int = 12, seed: int = 1) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in documents(count, seed)))
    return path


def lm_series(root: Path, steps: list[int], *, seed: int = 0, hidden: int = 32, layers: int = 1,
              scale: float = 0.05, tie: bool = False) -> Path:
    """A random tiny Llama and its tokenizer; each later checkpoint moves every tensor by seeded noise."""
    tok = train_tokenizer(documents(200, seed=99), vocab_size=300, max_length=512)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=tie, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    for j, step in enumerate(steps):
        if j:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=gen) * scale)
        model.save_pretrained(root / f"step_{step}")
        tok.save_pretrained(root / f"step_{step}")
    (root / "series.json").write_text(json.dumps({"tokens_per_step": 1000}))
    return root
