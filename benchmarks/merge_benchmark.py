"""Merge throughput and memory: wsm-merge vs a plain load-all-and-average script vs mergekit.

    .venv/bin/python benchmarks/merge_benchmark.py [--params 250e6] [--repeats 3] [--quantities 5,10]

Generates a series of ``--params`` float parameters per checkpoint (fp32 and bf16) in a temp
folder, flushes it to disk and reads it once (so no tool pays for the generator's writeback or a
cold page cache), runs every tool once as an unmeasured warm-up, then ``--repeats`` rounds in
which the tools take turns (round-robin, so a slow spell on the machine hits all of them), each
as a subprocess. Reports the median wall time, bytes read and effective GB/s, and peak anonymous (RssAnon) and
file-backed (RssFile) memory sampled from /proc. Outputs are compared tensor by tensor. mergekit
runs only when ``mergekit-yaml`` is on PATH (``pip install -e '.[bench]'``). Not a test: timings
on a shared machine are noisy, so read them as ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

BIN = Path(sys.executable).parent

PLAIN = textwrap.dedent("""
    import sys, torch
    from safetensors.torch import load_file, save_file
    out, paths = sys.argv[1], sys.argv[2:]
    states = [load_file(p) for p in paths]
    w = torch.tensor(1.0 / len(states))
    merged = {}
    for k in states[0]:
        acc = states[0][k].float() * w  # wsm-merge's arithmetic: multiply, then add, each rounded in fp32
        for s in states[1:]:
            acc = acc + s[k].float() * w
        merged[k] = acc.to(states[0][k].dtype)
    save_file(merged, out, metadata={"format": "pt"})
""")

def make_series(root: Path, params: float, quantity: int, dtype: torch.dtype) -> list[Path]:
    """``quantity`` random checkpoints of a Llama layout with about ``params`` parameters.

    A real architecture (names and shapes from ``LlamaForCausalLM`` on the meta device), so that
    mergekit, which resolves tensors by architecture, can read the series too.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    layers = max(1, round((params - 2 * 32000 * 1024) / 12.85e6))
    config = LlamaConfig(architectures=["LlamaForCausalLM"], vocab_size=32000, hidden_size=1024,
                         intermediate_size=2816, num_hidden_layers=layers, num_attention_heads=16,
                         tie_word_embeddings=False)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(config).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    paths = []
    for step in range(quantity):
        folder = root / f"step_{(step + 1) * 100}"
        folder.mkdir(parents=True)
        state = {k: torch.randn(shape, generator=gen).mul_(0.02).to(dtype) for k, shape in shapes.items()}
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        config.save_pretrained(folder)
        paths.append(folder)
    return paths


def run_measured(cmd: list[str]) -> dict:
    """Wall time and peak RssAnon / RssFile (MiB) of a subprocess, sampled every 20 ms."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = peak_file = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Rss")}
            peak_anon = max(peak_anon, int(fields.get("RssAnon", 0)) // 1024)
            peak_file = max(peak_file, int(fields.get("RssFile", 0)) // 1024)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.read()[-2000:]}")
    return {"seconds": seconds, "anon_mib": peak_anon, "file_mib": peak_file, "stdout": proc.stdout.read()}


def tools(paths: list[Path], work: Path, out_dtype: str) -> dict[str, tuple[list[str], Path]]:
    out = {
        "wsm-merge": ([str(BIN / "wsm-merge"), str(paths[0].parent), "--curve", "mean", "--quantity",
                       str(len(paths)), "--out", str(work / "wsm"), "--overwrite", "--quiet"],
                      work / "wsm"),  # a folder: one file, or shards past 2 GiB
        "plain script": ([sys.executable, str(work / "plain.py"), str(work / "plain.safetensors"),
                          *[str(p / "model.safetensors") for p in paths]], work / "plain.safetensors"),
    }
    (work / "plain.py").write_text(PLAIN)
    mergekit = shutil.which("mergekit-yaml") or (str(BIN / "mergekit-yaml") if (BIN / "mergekit-yaml").exists() else None)
    if mergekit:
        # The same weights as wsm-merge's mean curve, unnormalised: both sum w_i·theta_i in fp32 in checkpoint
        # order; mergekit with a fused multiply-add (addcmul_), wsm-merge without, so a few last bits differ.
        models = "\n".join(f"  - model: {p}\n    parameters: {{weight: {1.0 / len(paths)!r}}}" for p in paths)
        (work / "mk.yml").write_text(f"merge_method: linear\nmodels:\n{models}\nparameters: {{normalize: false}}\n"
                                     f"dtype: float32\nout_dtype: {out_dtype}\n")
        out["mergekit linear"] = ([mergekit, str(work / "mk.yml"), str(work / "mk"), "--quiet", "--no-copy-tokenizer",
                                   "--allow-crimes", "--out-shard-size", "2B"], work / "mk")
    return out


def load_output(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        merged = {}
        for file in sorted(path.glob("*.safetensors")):
            merged.update(load_file(file))
        return merged
    return load_file(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=250e6, help="parameters per checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quantities", default="5,10")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()
    print("| dtype | N | tool | median s | GB read | GB/s | peak anon MiB | peak file MiB | elements ≠ wsm-merge | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        for quantity in map(int, args.quantities.split(",")):
            with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
                work = Path(tmp)
                paths = make_series(work / "series", int(args.params), quantity, dtype)
                nbytes = sum((p / "model.safetensors").stat().st_size for p in paths)
                os.sync()
                for p in paths:
                    (p / "model.safetensors").read_bytes()
                commands = tools(paths, work, dtype_name)
                for cmd, _ in commands.values():
                    run_measured(cmd)  # warm-up, not measured
                results = {name: [] for name in commands}
                for _ in range(args.repeats):
                    for name, (cmd, _) in commands.items():
                        results[name].append(run_measured(cmd))
                        os.sync()  # the next tool does not pay for this one's writeback
                outputs = {name: output for name, (_, output) in commands.items()}
                reference = load_output(outputs["wsm-merge"])
                for name, runs in results.items():
                    merged = load_output(outputs[name])
                    diff = max((merged[k].float() - reference[k].float()).abs().max().item() for k in reference)
                    unequal = sum(int((merged[k] != reference[k]).sum()) for k in reference)
                    median = statistics.median(r["seconds"] for r in runs)
                    print(f"| {dtype_name} | {quantity} | {name} | {median:.2f} | {nbytes / 1e9:.2f} | "
                          f"{nbytes / 1e9 / median:.2f} | {max(r['anon_mib'] for r in runs)} | "
                          f"{max(r['file_mib'] for r in runs)} | {unequal} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
