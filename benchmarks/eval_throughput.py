"""Evaluation throughput: the harness's held-out bits per byte against a bare torch forward loop, side by side.

    .venv/bin/python benchmarks/eval_throughput.py [--model ~/.cache/wsm_exp/smollm2-testbed/theta0]
        [--docs 100] [--batch-size 16] [--dtype float32] [--repeats 3] [--tasks wsm_arc_easy]

Both read the same documents (the held-out pieces of the embedded study's Wikipedia split, cut as
the ``wsm_heldout_bpb`` task cuts them), with the same model, dtype and batch size, in the same
process, alternating, ``--repeats`` times; the table gives medians and their ratio. The harness
figure is what a sweep job pays per task (``Score.tokens_per_second``: lm-eval's task setup,
tokenisation and scoring included, model loading not); the bare loops time only their forward passes
(padded to the longest of each batch, ``inference_mode``, cross-entropy of each document's tokens after
lm-eval's prefix token), once with the documents in order and once sorted by length (the harness sorts
too, so the sorted loop is the strict peer). Their bits per byte must agree, which checks that all
measured the same work. ``--tasks`` adds other tasks' harness tokens/s (one run each).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import wsm_exp  # noqa: F401  (offline defaults)
from wsm_exp.evaluation import SuiteConfig, evaluate
from wsm_exp.evaluation.tasks import loaders as task_loaders
from wsm_exp.study import DataConfig, heldout_path

CACHE = Path.home() / ".cache" / "wsm_exp"


def bare_loop(model, batches: list[torch.Tensor], targets: list[torch.Tensor]) -> tuple[float, float]:
    """(seconds, total nats) of forward passes over padded batches; target -100 marks padding."""
    nats = 0.0
    started = time.perf_counter()
    with torch.inference_mode():
        for ids, target in zip(batches, targets):
            logits = model(ids).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target.flatten(),
                                                     ignore_index=-100, reduction="sum")
            nats += float(loss)
    return time.perf_counter() - started, nats


def padded_batches(tokenizer, texts: list[str], batch_size: int, prefix: int, by_length: bool = False):
    """Inputs ([prefix] + tokens[:-1]) and targets (tokens), right-padded per batch; documents in order, or
    longest first with ``by_length`` (so each batch pads to a near neighbour)."""
    encoded = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    if by_length:
        encoded.sort(key=len, reverse=True)
    batches, targets, count = [], [], 0
    for start in range(0, len(encoded), batch_size):
        docs = encoded[start:start + batch_size]
        width = max(len(d) for d in docs)
        ids = torch.zeros(len(docs), width, dtype=torch.long)
        target = torch.full((len(docs), width), -100, dtype=torch.long)
        for row, doc in enumerate(docs):
            ids[row, :len(doc)] = torch.tensor([prefix] + doc[:-1])
            target[row, :len(doc)] = torch.tensor(doc)
            count += len(doc)
        batches.append(ids)
        targets.append(target)
    return batches, targets, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=CACHE / "smollm2-testbed" / "theta0")
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", default="", help="comma-separated tasks whose harness tokens/s to add")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"{args.model} is not a model folder: build the test bed first "
                         "(benchmarks/smollm2_testbed.py) or pass --model.")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    heldout = heldout_path(DataConfig(), CACHE / "study-data")
    texts = task_loaders.heldout(str(heldout))["test"]["text"][:args.docs]
    suite = SuiteConfig(tasks=["wsm_heldout_bpb"], limit=args.docs, batch_size=args.batch_size, dtype=args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    loops = {order: padded_batches(tokenizer, texts, args.batch_size, prefix, by_length=order == "sorted")
             for order in ("in order", "sorted")}
    tokens = loops["in order"][2]
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()
    n_bytes = sum(len(t.encode()) for t in texts)
    harness, bare, bpb = [], {order: [] for order in loops}, {}
    for _ in range(args.repeats):
        (score,) = [s for s in evaluate(args.model, suite, cache_dir=None, extra_data={"heldout": heldout}).scores
                    if s.metric == "bits_per_byte"]  # no score cache: every repeat evaluates
        harness.append(score.tokens_per_second)
        for order, (batches, targets, _) in loops.items():
            seconds, nats = bare_loop(model, batches, targets)
            bare[order].append(tokens / seconds)
            bpb[order] = nats / n_bytes / torch.log(torch.tensor(2.0)).item()
    print(f"model {args.model}, {args.dtype}, batch {args.batch_size}, {len(texts)} documents, {tokens} tokens "
          f"(harness counted {score.tokens}), {args.repeats} repeats, {torch.get_num_threads()} threads")
    print("| path | median tokens/s | runs | bits per byte |\n|---|---|---|---|")
    print(f"| harness (wsm_heldout_bpb) | {statistics.median(harness):.0f} | "
          f"{', '.join(f'{r:.0f}' for r in harness)} | {score.value:.6f} |")
    for order, runs in bare.items():
        print(f"| bare forward loop, documents {order} | {statistics.median(runs):.0f} | "
              f"{', '.join(f'{r:.0f}' for r in runs)} | {bpb[order]:.6f} |")
    for order, runs in bare.items():
        print(f"ratio harness / bare, documents {order} (medians): "
              f"{statistics.median(harness) / statistics.median(runs):.2f}")
    for task in filter(None, args.tasks.split(",")):
        other = SuiteConfig(tasks=[task], limit=args.docs, batch_size=args.batch_size, dtype=args.dtype)
        first = evaluate(args.model, other, cache_dir=None).scores[0]
        print(f"| harness ({task}) | {first.tokens_per_second:.0f} | 1 | {first.metric} {first.value:.3f} |")


if __name__ == "__main__":
    main()
