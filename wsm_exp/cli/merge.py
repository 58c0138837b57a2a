"""``wsm-merge``: merge a window of a constant-LR checkpoint series so it emulates a LR decay.

parse -> series -> window(s) -> ``build_plan`` -> merge (hashing the inputs as it streams them).
Comma lists in --curve/--quantity/--interval/--duration give one merge per combination, all in
one streaming pass (``merge_plans``).
Errors are one paragraph on stderr, exit code 2, and nothing written.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import re
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
  # six merges in one pass over the union of their checkpoints: merged/grid/<curve>-N<n>-I<Δ>-E<end>/
  wsm-merge ckpts/run --curve mean,1-sqrt --quantity 2,4,8 --out merged/grid
  # DCP checkpoints (torch.distributed.checkpoint folders) merged into a Hugging Face folder lm-eval reads
  wsm-merge dcp/run --quantity 4 --hf-config hf/my-model --out merged/hf-4
  # past the merge (ExPO): θ_merge + 0.5 (θ_merge − θ_newest); control: the 1-sqrt weights reversed
  wsm-merge ckpts/run --quantity 4 --extrapolate 0.5 --out merged/mean4-ex0.5
  wsm-merge ckpts/run --curve 1-sqrt --quantity 8 --order reverse --out merged/1sqrt-8-reverse
  # weights fitted to minimise held-out loss on a fit split of heldout.jsonl (monotone: older never weighs
  # less, so the emulated decay is convex, like 1-sqrt)
  wsm-merge ckpts/run --curve fitted --quantity 4 --heldout heldout.jsonl --fit-monotone --out merged/fit-4

Weights follow the WSM paper (arXiv 2507.17634): w_i = f(i/N) for i = 1..N-1, then Theorem 3.1.
The series folder holds children named step_<n>, step<n>, checkpoint-<n>, iter_<n> or
global_step<n>: Hugging Face folders (model.safetensors or shards + index), .safetensors files, or
DCP folders (.metadata + __<rank>_<k>.distcp; merged into a one-rank DCP checkpoint unless --hf-config).
"""


def build_parser() -> argparse.ArgumentParser:
    from wsm_exp.cli.merge_fit import add_fit_arguments
    from wsm_exp.merging.weights import CURVES

    p = argparse.ArgumentParser(prog="wsm-merge", description=__doc__.splitlines()[0].split(": ", 1)[1],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("series", help="folder of step-named checkpoints (e.g. ckpts/run with step_1000/, step_2000/ …)")
    p.add_argument("--curve", type=names, help=f"decay curve to emulate: {', '.join(CURVES)}, or fitted (with "
                                               "--heldout) (default: mean); like the next three, a comma list "
                                               "merges every combination")
    p.add_argument("--quantity", "-n", type=counts, help="N, number of checkpoints to merge (e.g. 8, or 2,4,8)")
    p.add_argument("--interval", type=counts, help="Δ in steps between merged checkpoints (default: the saved spacing)")
    p.add_argument("--duration", type=counts, help="D = N·Δ in steps; give it with --quantity or --interval")
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
    p.add_argument("--out", help="output folder (required unless --dry-run); with comma lists, the folder that "
                                 "gets one merged model per combination, named after it (e.g. 1-sqrt-N8-I100-E4000)")
    p.add_argument("--dry-run", action="store_true", help="print the plan as JSON and write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (after the merge completes)")
    p.add_argument("--allow-nonfinite", action="store_true", help="merge tensors containing NaN/Inf anyway")
    p.add_argument("--hf-config", help="with DCP checkpoints: a Hugging Face model folder whose config.json and "
                                       "tokenizer go beside the merged safetensors (default: write DCP)")
    p.add_argument("--workers", type=int, default=1, help="processes merging disjoint sets of output shards "
                                                          "(default 1; the result is identical)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fit_arguments(p)
    return p


def counts(text: str) -> list[int]:
    """``8`` or a comma list ``4,8,16`` (one merge per value)."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or a comma list of integers (e.g. 4,8)") from None


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",")]


def make_plans(args: argparse.Namespace) -> dict[str, object]:
    """One plan per combination of the comma lists, by variant name (identities only from the cache)."""
    from wsm_exp.cli.merge_fit import fitted_plan
    from wsm_exp.merging.extrapolate import curve_label
    from wsm_exp.merging.plan import FITTED, build_plan
    from wsm_exp.merging.series import load_series, select_window

    weights = [float(x) for x in args.weights.split(",")] if args.weights else None
    series = load_series(args.series, tokens_per_step=args.tokens_per_step)
    combos = list(itertools.product(args.curve or [None], args.quantity or [None], args.interval or [None],
                                    args.duration or [None]))
    if weights and len(combos) > 1:
        raise ValueError("--weights fixes one merge, so comma lists in --curve, --quantity, --interval or "
                         "--duration cannot apply; give single values.")
    plans = {}
    for curve, quantity, interval, duration in combos:
        try:
            if weights and quantity is None and duration is None:
                quantity = len(weights)
            window = select_window(series, end=args.end, quantity=quantity, interval=interval, duration=duration)
            if curve == FITTED:
                plan = fitted_plan(window, args)
                plans.setdefault(f"{FITTED}-N{window.quantity}-I{window.interval}-E{window.end_step}", plan)
                continue
            plan = build_plan(window, curve=curve, weights=weights, min_lr=args.min_lr, alpha=args.alpha,
                              dtype=args.dtype, accumulate=args.accumulate, normalize=not args.allow_unnormalized,
                              identify=False)
            label = curve_label(plan.curve_name, order=args.order, seed=args.order_seed, alpha=args.extrapolate,
                                anchor_step=args.anchor)
            plan = _beyond(plan, args, weights)
        except ValueError as err:
            if len(combos) == 1:
                raise
            given = zip(("--curve", "--quantity", "--interval", "--duration"), (curve, quantity, interval, duration))
            raise type(err)(f"{' '.join(f'{o} {v}' for o, v in given if v is not None)}: {err}") from None
        w = plan.window
        plans.setdefault(f"{label}-N{w.quantity}-I{w.interval}-E{w.end_step}", plan)
    return plans


def _beyond(plan, args: argparse.Namespace, given: list[float] | None):
    """The plan with its weights reordered, extrapolated or taken unnormalised (docs/beyond.md), if asked."""
    from wsm_exp.merging.extrapolate import is_convex, transform
    from wsm_exp.merging.plan import build_plan
    from wsm_exp.merging.weights import WeightsError

    if args.allow_unnormalized and not given:
        raise WeightsError("--allow-unnormalized only applies to --weights (a curve's weights always sum to 1); "
                           "use --extrapolate to go past the merge.")
    if not (args.extrapolate or args.order != "natural" or args.allow_unnormalized):
        return plan
    steps = [c.step for c in plan.checkpoints]
    if args.anchor is not None and args.anchor not in steps:
        raise WeightsError(f"--anchor {args.anchor} is not a merged checkpoint; the window's steps are {steps}.")
    weights = transform(list(plan.weights), order=args.order, seed=args.order_seed, alpha=args.extrapolate,
                        anchor=-1 if args.anchor is None else steps.index(args.anchor))
    if not is_convex(weights):
        print(f"wsm-merge: warning: the weights {[round(w, 6) for w in weights]} (sum {sum(weights):.6g}) are not an "
              "average of the window (negative or not summing to 1); recorded in merge.json.", file=sys.stderr)
    return build_plan(plan.window, weights=weights, normalize=False, dtype=args.dtype, accumulate=args.accumulate,
                      identify=False)


def in_cli_terms(message: str) -> str:
    """Shared messages name Hydra keys (``merge.curve=1-sqrt``); here they name the options (``--curve 1-sqrt``).

    >>> in_cli_terms("e.g. merge.min_lr=0.1, or merge.weights=[0.2,0.8]; merge.alpha; its merge.json")
    'e.g. --min-lr 0.1, or --weights 0.2,0.8; --alpha; its merge.json'
    """
    message = re.sub(r"merge\.(\w+)=\[([^\]]*)\]", lambda m: f"--{m[1].replace('_', '-')} {m[2]}", message)
    message = re.sub(r"merge\.(\w+)=", lambda m: f"--{m[1].replace('_', '-')} ", message)
    return re.sub(r"merge\.(?!json\b)(\w+)", lambda m: f"--{m[1].replace('_', '-')}", message)


def main(argv: list[str] | None = None) -> int:
    from wsm_exp.cli.merge_fit import retired_monotone
    from wsm_exp.merging.plan import PlanError
    from wsm_exp.merging.series import validate_window

    retired = retired_monotone(sys.argv[1:] if argv is None else argv)
    if retired:
        print(f"wsm-merge: error: {retired}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        if not args.dry_run and not args.out:
            raise PlanError("--out is required (the folder the merged model is written to), unless --dry-run.")
        plans = make_plans(args)
        for plan in plans.values():
            validate_window(plan.window)  # every header checked before any tensor is read
        single = len(plans) == 1
        outs = [Path(args.out) if single else Path(args.out) / name for name in plans] if args.out else []
        note = {"order": args.order, "order_seed": args.order_seed, "extrapolate": args.extrapolate,
                "anchor": args.anchor, "normalized": not args.allow_unnormalized}  # merge.json's "note", too
        if args.dry_run:
            described = ([{"name": name, **plan.describe(), "note": note} for name, plan in plans.items()]
                         if not single else {**next(iter(plans.values())).describe(), "note": note})
            print(json.dumps(described, indent=1))
            return 0
        from wsm_exp.merging.merger import merge_plans

        results = merge_plans(list(plans.values()), outs, overwrite=args.overwrite, provenance=note,
                              shard_size_bytes=int(args.shard_size * 1024**3), allow_nonfinite=args.allow_nonfinite,
                              progress=not args.quiet, hf_config=args.hf_config,
                              workers=args.workers)
    except ValueError as err:  # SeriesError, WindowError, WeightsError, PlanError, CheckpointError, MergeError
        print(f"wsm-merge: error: {in_cli_terms(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # full disk, file-size limit, no permission: nothing was published, nothing left
        fix = ("raise the file-size limit (ulimit -f) or pass a smaller --shard-size" if err.errno == errno.EFBIG
               else "free space or pick a writable --out")
        print(f"wsm-merge: error: could not read the series or write {args.out}: {err}. Nothing was written to "
              f"the output folder; {fix} and rerun.", file=sys.stderr)
        return 2
    for plan, result in zip(plans.values(), results):
        print(f"merged {len(plan.checkpoints)} checkpoints (steps {[c.step for c in plan.checkpoints]}) into "
              f"{result.out_dir}, key {result.key}, identity {result.identity}")
    gbps = results[0].bytes_read / 1e9 / max(results[0].seconds, 1e-9)
    print(f"{len(results)} merge(s) in one pass: {results[0].seconds:.1f}s, {results[0].bytes_read / 1e9:.3f} GB read "
          f"({gbps:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
