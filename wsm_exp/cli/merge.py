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
  # past the merge (ExPO): θ_merge + 0.5 (θ_merge − θ_newest); control: the 1-sqrt weights reversed
  wsm-merge ckpts/run --quantity 4 --extrapolate 0.5 --out merged/mean4-ex0.5
  wsm-merge ckpts/run --curve 1-sqrt --quantity 8 --order reverse --out merged/1sqrt-8-reverse

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
    p.add_argument("--extrapolate", type=float, default=0.0, metavar="ALPHA",
                   help="write θ_merge + α(θ_merge − θ_anchor) (ExPO; docs/beyond.md), e.g. 0.5; default 0")
    p.add_argument("--anchor", type=int,
                   help="step of the extrapolation anchor (default: the newest merged checkpoint)")
    p.add_argument("--order", choices=["natural", "reverse", "scramble"], default="natural",
                   help="control merges: lay the curve's weights newest↔oldest or in a seeded permutation")
    p.add_argument("--order-seed", type=int, default=0, help="seed of --order scramble (default: 0)")
    p.add_argument("--allow-unnormalized", action="store_true",
                   help="use --weights as given: negative weights and any sum allowed (with a warning)")
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
    from wsm_exp.merging.extrapolate import is_convex, transform, unnormalized_weights
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
    if args.allow_unnormalized and not args.weights:
        raise WeightsError("--allow-unnormalized only applies to --weights (a curve's weights always sum to 1); "
                           "use --extrapolate to go past the merge.")
    if args.weights:
        values = [float(x) for x in args.weights.split(",")]
        weights = (unnormalized_weights(values, window.quantity) if args.allow_unnormalized
                   else explicit_weights(values, window.quantity))
    else:
        weights = merge_weights(curve, window.quantity, min_lr=args.min_lr, alpha=args.alpha)
    steps = [c.step for c in window.checkpoints]
    if args.anchor is not None and args.anchor not in steps:
        raise WeightsError(f"--anchor {args.anchor} is not a merged checkpoint; the window's steps are {steps}.")
    weights = transform(weights, order=args.order, seed=args.order_seed, alpha=args.extrapolate,
                        anchor=-1 if args.anchor is None else steps.index(args.anchor))
    if not is_convex(weights):
        print(f"wsm-merge: warning: the weights {[round(w, 6) for w in weights]} (sum {sum(weights):.6g}) are not an "
              "average of the window (negative or not summing to 1); recorded in merge.json.", file=sys.stderr)
    payload = {
        "checkpoints": [{"step": c.step, "path": str(c.path), "weight": w} for c, w in zip(window.checkpoints, weights)],
        "curve": curve, "quantity": window.quantity,
        "interval": window.interval, "duration": window.duration, "span": window.span,
        "end": window.end_step, "min_lr": args.min_lr, "convention": CONVENTION,
        "order": args.order, "order_seed": args.order_seed, "extrapolate": args.extrapolate, "anchor": args.anchor,
        "normalized": not args.allow_unnormalized, "convex": is_convex(weights),
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
                        "interval": window.interval, "duration": window.duration,
                        **{k: payload[k] for k in ("order", "order_seed", "extrapolate", "anchor", "normalized",
                                                   "convex")}},
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
