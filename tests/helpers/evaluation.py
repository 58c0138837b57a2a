"""A tiny random Llama with a locally trained tokenizer, saved as a Hugging Face folder."""

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from wsm_exp.study.tokenizer import train_tokenizer

TEXT = ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n",
        "Question: What is 2 + 2?\nAnswer: 4", "Paris is the capital of France."] * 40


def tiny_lm(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tok = train_tokenizer(TEXT, vocab_size=400, max_length=2048)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_series(root: Path, steps: list[int], seed: int = 0) -> Path:
    """A series of ``tiny_lm`` checkpoints (config + tokenizer in each) whose weights take seeded random steps."""
    from safetensors.torch import load_file, save_file

    first = tiny_lm(root / f"step_{steps[0]}", seed)
    state = load_file(first / "model.safetensors")
    gen = torch.Generator().manual_seed(seed + 1)
    for step in steps[1:]:
        state = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in state.items()}
        folder = root / f"step_{step}"
        folder.mkdir(parents=True)
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        for side in first.iterdir():
            if side.name != "model.safetensors":
                (folder / side.name).write_bytes(side.read_bytes())
    (root / "series.json").write_text('{"tokens_per_step": 1000}')
    return root
