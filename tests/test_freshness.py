"""A stored number is reused only when every input that made it is unchanged (real files, real runs).

A user series of three ~42 MB checkpoints (random tiny-vocab Llamas, so nothing is trained) is merged
and evaluated through the real entry point; then one input at a time is changed in place and the
same command is rerun: the variant must be recomputed, and the log must say which input changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.sweep import ROOT

pytestmark = pytest.mark.slow

HELDOUT = [{"text": f"Held-out document {k}: the quick brown fox jumps over the lazy dog {k} times."} for k in range(12)]


def _series(root: Path) -> Path:
    """Three checkpoints whose one big tensor is > 16 MB, plus a tokenizer trained on the spot."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from wsm_exp.study.tokenizer import train_tokenizer

    tokenizer = train_tokenizer([d["text"] for d in HELDOUT] * 20, vocab_size=300)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False)
    series = root / "series"
    for k, step in enumerate((100, 200, 300)):
        torch.manual_seed(k)
        model = LlamaForCausalLM(config)
        with torch.no_grad():  # a wide MLP makes the weight file large (three ~17 MB tensors)
            model.model.layers[0].mlp.up_proj = torch.nn.Linear(64, 65536, bias=False)
            model.model.layers[0].mlp.gate_proj = torch.nn.Linear(64, 65536, bias=False)
            model.model.layers[0].mlp.down_proj = torch.nn.Linear(65536, 64, bias=False)
        model.config.intermediate_size = 65536
        model.save_pretrained(series / f"step_{step}")
        tokenizer.save_pretrained(series / f"step_{step}")
    return series


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    series = _series(root)
    heldout = root / "heldout.jsonl"
    heldout.write_text("".join(json.dumps(d) + "\n" for d in HELDOUT))
    code = root / "code"  # a private copy of the package, so a task YAML can be edited in a test
    for part in ("wsm_exp", "conf", "analysis"):
        shutil.copytree(ROOT / part, code / part, ignore=shutil.ignore_patterns("__pycache__"))
    return root, series, heldout, code


def _run(setup, *extra: str):
    root, series, heldout, code = setup
    args = [sys.executable, "-m", "wsm_exp", f"paths.sweeps={root}/sweeps", f"paths.cache={root}/cache",
            "sweep_name=fresh", f"series.path={series}", "series.tokens_per_step=1000", f"series.heldout={heldout}",
            "baselines.wsd_shapes=[]", "baselines.matched_tokens=false", "merge.quantity=2",
            "eval.tasks=[wsm_heldout_bpb]", "eval.limit=8", "eval.limits={}", "logger=none", *extra]
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run(args, cwd=code, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _edit_middle(path: Path) -> None:
    """Change 8 bytes in the middle of a file, in place, keeping its size."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        old = handle.read(8)
        handle.seek(size // 2)
        handle.write(bytes(b ^ 0x5A for b in old))
    assert path.stat().st_size == size


def test_an_input_changed_in_place_is_recomputed_and_named(setup):
    root, series, heldout, code = setup
    weights = series / "step_300" / "model.safetensors"
    assert weights.stat().st_size > 16 * 2**20
    first = _run(setup)
    assert "computed wsm-mean-N2-I100-E300-s0" in first and "computed raw-E300-s0" in first

    again = _run(setup)
    assert "reused wsm-mean-N2-I100-E300-s0" in again and "0 computed, 2 reused" in again

    _edit_middle(weights)
    edited = _run(setup)
    assert "recomputed wsm-mean-N2-I100-E300-s0: checkpoint wsm/step_300 changed" in edited
    assert "recomputed raw-E300-s0: checkpoint wsm/step_300 changed" in edited

    heldout.write_text("".join(json.dumps({"text": d["text"].upper()}) + "\n" for d in HELDOUT))
    replaced = _run(setup)
    assert "recomputed wsm-mean-N2-I100-E300-s0: held-out file changed" in replaced

    task = code / "wsm_exp" / "evaluation" / "tasks" / "wsm_heldout_bpb.yaml"
    task.write_text(task.read_text() + "\n# edited\n")
    retasked = _run(setup)
    assert "recomputed raw-E300-s0: task configs changed" in retasked

    settings = _run(setup, "eval.batch_size=2")
    assert "recomputed raw-E300-s0: eval settings changed" in settings


def _model_hash(root: Path, variant: str) -> str:
    import pandas as pd

    frame = pd.read_parquet(root / "sweeps" / "fresh" / "results.parquet")
    return frame.loc[frame["variant"] == variant, "model_hash"].iloc[0]


def test_tokenizer_and_sample_code_changed_in_place_recompute_exactly_their_variants(setup):
    root, series, heldout, code = setup
    merge, raw = "wsm-mean-N2-I100-E300-s0", "raw-E300-s0"
    _run(setup)  # whatever an earlier test left: now all fresh

    older = series / "step_200" / "tokenizer.json"  # only the merge reads step 200
    older.write_text(json.dumps(json.loads(older.read_text()), indent=2))  # same tokens, other bytes
    edited = _run(setup)
    assert f"recomputed {merge}: checkpoint wsm/step_200 changed" in edited
    assert f"reused {raw}" in edited and "1 computed, 1 reused" in edited

    newest = series / "step_300" / "tokenizer.json"  # a tokenizer fixed in place: the merge copies it
    newest.write_text(json.dumps(json.loads(newest.read_text()), indent=1))
    fixed = _run(setup)
    assert f"recomputed {merge}: checkpoint wsm/step_300 changed" in fixed
    assert f"recomputed {raw}: checkpoint wsm/step_300 changed" in fixed
    merged = root / "cache" / "merges" / _model_hash(root, merge)
    assert (merged / "tokenizer.json").read_bytes() == newest.read_bytes(), "the merge carries the fixed tokenizer"

    extraction = code / "wsm_exp" / "evaluation" / "samples.py"  # the per-document extraction code
    extraction.write_text(extraction.read_text() + "\n# edited\n")
    resampled = _run(setup)
    assert f"recomputed {merge}: task configs changed" in resampled
    assert f"recomputed {raw}: task configs changed" in resampled
