"""Cost of fitted merge weights: ``wsm-merge --curve fitted`` vs one ``wsm-merge`` of the same window.

    .venv/bin/python benchmarks/fit_benchmark.py [--model small|smollm2] [--quantities 4,8] [--docs 40]
    .venv/bin/python benchmarks/fit_benchmark.py --series ~/.cache/wsm_exp/smollm2-testbed --quantities 4,8

With ``--series``, an existing checkpoint series (e.g. the SmolLM2 test bed of benchmarks/smollm2_testbed.py,
real pretrained weights and tokenizer) is merged as it is. Otherwise the script builds a random-initialised
Llama series (``small``: the study's 11M model, h384 × 6 layers, vocab 4096;
``smollm2``: SmolLM2-135M's shape, h576 × 30 layers, vocab 49152, tied) of ``max(quantities)`` fp32
checkpoints that differ by seeded noise, with a BPE tokenizer trained on the held-out text: ``--docs``
paragraphs of this repository's docs/*.md (real English; half fit, half test). Then, per N, one
``wsm-merge --curve mean`` and one ``wsm-merge --curve fitted`` (default fit settings) of the newest N
checkpoints, each a fresh process: wall time, peak anonymous memory, and for the fit its own seconds and
loss (from merge.json). Page cache warm (the merge runs first). Not a test: a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from merge_benchmark import BIN, run_measured  # noqa: E402

from wsm_exp.merging.series import load_series  # noqa: E402
from wsm_exp.study.tokenizer import train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "small": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                  num_key_value_heads=6, vocab_size=4096, tie_word_embeddings=True),
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
}


def heldout_docs(count: int) -> list[str]:
    paragraphs = [p.strip() for f in sorted((ROOT / "docs").glob("*.md")) for p in f.read_text().split("\n\n")]
    prose = [re.sub(r"\s+", " ", p) for p in paragraphs if len(p) > 300 and not p.startswith(("|", "```", "#"))]
    return prose[:count]


def build(work: Path, model: str, count: int, docs: list[str]) -> tuple[Path, Path, int]:
    tok = train_tokenizer(docs * 3, vocab_size=2048, max_length=2048)
    cfg = LlamaConfig(**MODELS[model], max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    net = LlamaForCausalLM(cfg)
    params = sum(p.numel() for p in net.parameters())
    gen = torch.Generator().manual_seed(1)
    for j in range(count):
        if j:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn(p.shape, generator=gen) * 0.002)
        net.save_pretrained(work / "series" / f"step_{(j + 1) * 100}")
        tok.save_pretrained(work / "series" / f"step_{(j + 1) * 100}")
    heldout = work / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return work / "series", heldout, params


def measured(cmd: list[str]) -> dict:
    """``run_measured`` plus the child's CPU seconds (user + system), which contention on a shared machine
    inflates less than wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_measured(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {**result, "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="small")
    parser.add_argument("--quantities", default="4,8")
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=6, help="fit steps (the default of FitConfig)")
    parser.add_argument("--series", type=Path, help="an existing series to merge instead of a random one")
    args = parser.parse_args()
    quantities = [int(q) for q in args.quantities.split(",")]
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        work = Path(tmp)
        if args.series:
            series, heldout = args.series.expanduser(), work / "heldout.jsonl"
            heldout.write_text("".join(json.dumps({"text": d}) + "\n" for d in heldout_docs(args.docs)))
            newest = load_series(series).checkpoints[-1].path  # the merger's own discovery and order
            params = LlamaForCausalLM.from_pretrained(newest).num_parameters()
            name = f"{series} (newest {newest.name})"
        else:
            series, heldout, params = build(work, args.model, max(quantities), heldout_docs(args.docs))
            name = args.model
        print(f"{name}: {params / 1e6:.1f}M parameters, {args.docs} held-out documents\n")
        print("| N | one merge s (CPU s) | merge MiB | fitted merge s (CPU s) | of which fit s | fitted MiB | "
              "time ratio (CPU) | memory ratio | evaluations | fit tokens | fit loss start → end | "
              "test loss start → end |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in quantities:
            common = [str(BIN / "wsm-merge"), str(series), "--quantity", str(n), "--quiet", "--overwrite"]
            merge = measured([*common, "--curve", "mean", "--out", str(work / f"mean{n}")])
            fitted = measured([*common, "--curve", "fitted", "--heldout", str(heldout), "--fit-steps",
                                   str(args.steps), "--out", str(work / f"fit{n}")])
            fit = json.loads((work / f"fit{n}" / "merge.json").read_text())["fit"]
            print(f"| {n} | {merge['seconds']:.1f} ({merge['cpu']:.1f}) | {merge['anon_mib']} | "
                  f"{fitted['seconds']:.1f} ({fitted['cpu']:.1f}) | {fit['seconds']:.1f} | {fitted['anon_mib']} | "
                  f"{fitted['seconds'] / merge['seconds']:.0f}x ({fitted['cpu'] / merge['cpu']:.0f}x) | "
                  f"{fitted['anon_mib'] / max(merge['anon_mib'], 1):.1f}x | {fit['evaluations']} | {fit['fit_tokens']} | "
                  f"{fit['fit_loss_start']:.4f} → {fit['fit_loss_end']:.4f} | "
                  f"{fit['test_loss_start']:.4f} → {fit['test_loss_end']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
