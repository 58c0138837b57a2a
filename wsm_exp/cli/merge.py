"""``wsm-merge``: merge a window of a constant-LR checkpoint series so it emulates a LR decay.

parse -> series -> window -> weights -> validate -> merge. Errors are one paragraph on stderr,
exit code 2, and nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import wsm_exp  # noqa: F401  (offline defaults first)

EPILOG = """examples:
  # emulate a 1-sqrt decay over the last 8 checkpoints
  wsm-merge ckpts/run --curve 1-sqrt --quantity 8 --out merged/1sqrt-8
  # mean of 4 checkpoints 2000 steps apart ending at step 40000 (D = 8000 steps), plan only
  wsm-merge ckpts/run --curve mean --duration 8000 --interval 2000 --end 40000 --dry-run
  # explicit weights (oldest first), bf16 output
  wsm-merge ckpts/run --weights 0.1,0.2,0.3,0.4 --dtype bfloat16 --out merged/custom

Weights follow the WSM paper (arXiv 2507.17634): w_i = f(i/N) for i = 1..N-1, then Theorem 3.1.
The series folder holds children named step_<n>, step<n>, checkpoint-<n>, iter_<n> or
global_step<n>: Hugging Face folders (model.safetensors or shards + index) or .safetensors files.
"""


def build_parser() -> argparse.ArgumentParser:
    from wsm_exp.merging.weights import CURVES

    p = argparse.ArgumentParser(prog="wsm-merge", description=__doc__.splitlines()[0].split(": ", 1)[1],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("series", help="folder of step-named checkpoints (e.g. ckpts/run with step_1000/, step_2000/ …)")
    p.add_argument("--curve", help=f"decay curve to emulate: {', '.join(CURVES)} (default: mean)")
    p.add_argument("--quantity", "-n", type=int, help="N, number of checkpoints to merge (e.g. 8)")
    p.add_argument("--interval", type=int, help="Δ in steps between merged checkpoints (default: the saved spacing)")
    p.add_argument("--duration", type=int, help="D = N·Δ in steps; give it with --quantity or --interval")
    p.add_argument("--end", type=int, help="step of the newest merged checkpoint (default: the newest)")
    p.add_argument("--min-lr", type=float, default=0.0, help="emulated final LR fraction m: w(t) = m + (1-m) f(t)")
    p.add_argument("--alpha", type=float, help="EMA factor for --curve ema_alpha (e.g. 0.2)")
    p.add_argument("--weights", help="explicit weights, oldest first, comma separated (normalised to sum 1)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="output dtype (default: the input's)")
    p.add_argument("--accumulate", choices=["float32", "float64"], default="float32", help="accumulation precision")
    p.add_argument("--tokens-per-step", type=int, help="tokens per step (default: series.json), for the plan")
    p.add_argument("--shard-size", type=float, default=2.0, help="output shard size in GiB (default: 2)")
    p.add_argument("--out", help="output folder (required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="print the plan as JSON and write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (after the merge completes)")
    p.add_argument("--allow-nonfinite", action="store_true", help="merge tensors containing NaN/Inf anyway")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def plan(args: argparse.Namespace) -> tuple[object, list[float], dict]:
    """Series -> window -> weights; returns (window, weights, the JSON plan)."""
    from wsm_exp.merging.series import load_series, select_window
    from wsm_exp.merging.weights import CONVENTION, WeightsError, explicit_weights, merge_weights

    if args.weights and (args.curve or args.min_lr or args.alpha is not None):
        raise WeightsError("--weights gives the merge weights directly, so --curve, --min-lr and --alpha would be "
                           "ignored; drop them, or drop --weights to derive the weights from a curve.")
    curve = "explicit" if args.weights else args.curve or "mean"
    series = load_series(args.series, tokens_per_step=args.tokens_per_step)
    quantity = args.quantity
    if args.weights and quantity is None and args.duration is None:
        quantity = len(args.weights.split(","))
    window = select_window(series, end=args.end, quantity=quantity, interval=args.interval, duration=args.duration)
    if args.weights:
        weights = explicit_weights([float(x) for x in args.weights.split(",")], window.quantity)
    else:
        weights = merge_weights(curve, window.quantity, min_lr=args.min_lr, alpha=args.alpha)
    payload = {
        "checkpoints": [{"step": c.step, "path": str(c.path), "weight": w} for c, w in zip(window.checkpoints, weights)],
        "curve": curve, "quantity": window.quantity,
        "interval": window.interval, "duration": window.duration, "span": window.span,
        "end": window.end_step, "min_lr": args.min_lr, "convention": CONVENTION,
        "tokens_per_step": series.tokens_per_step, "duration_tokens": window.tokens(window.duration),
    }
    return window, weights, payload


def main(argv: list[str] | None = None) -> int:
    from wsm_exp.merging.merger import MergeError, merge_checkpoints
    from wsm_exp.merging.series import SeriesError, validate_window
    from wsm_exp.merging.weights import WeightsError

    args = build_parser().parse_args(argv)
    try:
        if not args.dry_run and not args.out:
            raise MergeError("--out is required (the folder the merged model is written to), unless --dry-run.")
        window, weights, payload = plan(args)
        validate_window(window)
        if args.dry_run:
            print(json.dumps(payload, indent=1))
            return 0
        result = merge_checkpoints(
            window.checkpoints, weights, Path(args.out), dtype=args.dtype, accumulate=args.accumulate,
            provenance={"curve": payload["curve"], "min_lr": args.min_lr, "convention": payload["convention"],
                        "interval": window.interval, "duration": window.duration},
            overwrite=args.overwrite, shard_size_bytes=int(args.shard_size * 1024**3),
            allow_nonfinite=args.allow_nonfinite, progress=not args.quiet,
        )
    except (SeriesError, WeightsError, MergeError, ValueError) as err:
        print(f"wsm-merge: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # full disk, no permission, missing parent folder: nothing was published
        print(f"wsm-merge: error: could not read the series or write {args.out}: {err}. Nothing was written to "
              "the output folder; free space or pick a writable --out and rerun.", file=sys.stderr)
        return 2
    print(f"merged {window.quantity} checkpoints (steps {[c.step for c in window.checkpoints]}) into {result.out_dir} "
          f"in {result.seconds:.1f}s ({result.bytes_read / 1e9 / max(result.seconds, 1e-9):.2f} GB/s), key {result.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
