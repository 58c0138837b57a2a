"""``wsm-merge --curve fitted --heldout FILE``: the fit's options, and the fitted weights as an ordinary merge plan.

The fit (``wsm_exp.merging.fit_lm``) runs once per window; its weights then take the explicit-weights path
of ``build_plan`` with the fit's provenance attached, so the merge, its ``merge.json`` and its key are a
normal merge's, plus the fit (the key includes the split and the settings).
"""

from __future__ import annotations

import argparse

FITTED = "fitted"


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--heldout`` / ``--fit-*`` options (docs/merging.md, "Fitted weights")."""
    from wsm_exp.merging.fit import FitConfig

    d = FitConfig()
    g = parser.add_argument_group("fitted weights (--curve fitted; docs/beyond.md)")
    g.add_argument("--heldout", help="jsonl of {\"text\": ...} documents; --curve fitted fits the weights on a "
                                     "seeded share of them (the fit split) and reports the loss on the rest")
    g.add_argument("--fit-steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    g.add_argument("--fit-lr", type=float, default=d.lr, help=f"largest change of one weight per step (default {d.lr})")
    g.add_argument("--fit-tol", type=float, default=d.tol,
                   help=f"an accepted step gaining less loss (nats/token) ends the fit early (default {d.tol:g}; 0: "
                        "every step)")
    g.add_argument("--fit-method", choices=["projected", "mirror"], default=d.method, help="projected or mirror descent")
    g.add_argument("--fit-monotone", action="store_true",
                   help="also keep the weights non-increasing, oldest to newest: a convex decay, like 1-sqrt "
                        "(projected descent only)")
    g.add_argument("--fit-init", default=d.init, help=f"curve the fit starts from (default {d.init})")
    g.add_argument("--fit-fraction", type=float, default=d.fit_fraction,
                   help=f"share of the held-out documents in the fit split (default {d.fit_fraction})")
    g.add_argument("--fit-seed", type=int, default=d.seed, help="seed of the fit/test split (default 0)")
    g.add_argument("--fit-seq-len", type=int, default=d.seq_len, help=f"tokens per sequence (default {d.seq_len})")
    g.add_argument("--fit-device", default="cpu", help="device the model runs on during the fit (e.g. cuda)")
    g.add_argument("--tokenizer", help="folder holding the tokenizer (default: the newest checkpoint's)")


def retired_monotone(argv: list[str]) -> str | None:
    """The error for ``--fit-monotone increasing|decreasing`` (a direction before, a switch now), else None.

    >>> retired_monotone(["run", "--fit-monotone", "--out", "x"]) is None
    True
    >>> retired_monotone(["run", "--fit-monotone=decreasing"]).split(":")[0]
    "--fit-monotone takes no value (got 'decreasing')"
    """
    from wsm_exp.merging.fit import MONOTONE_MEANING

    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--fit-monotone=") else \
            argv[i + 1] if arg == "--fit-monotone" and i + 1 < len(argv) else None
        if value in ("increasing", "decreasing", "true", "false"):
            return (f"--fit-monotone takes no value (got {value!r}): it is a switch now; give --fit-monotone alone "
                    f"for the constraint, or leave it out. {MONOTONE_MEANING}.")
    return None


def fitted_plan(window, args: argparse.Namespace):
    """Fit ``window``'s weights on ``args.heldout`` and return the merge plan of the fitted weights."""
    from wsm_exp.merging.fit import FitConfig
    from wsm_exp.merging.fit_lm import fit_window
    from wsm_exp.merging.implied import implied_schedule
    from wsm_exp.merging.plan import PlanError, build_plan

    refused = [flag for flag, on in (("--weights", args.weights), ("--min-lr", args.min_lr), ("--alpha", args.alpha),
                                     ("--extrapolate", args.extrapolate), ("--order", args.order != "natural"),
                                     ("--allow-unnormalized", args.allow_unnormalized), ("--dry-run", args.dry_run))
               if on]
    if refused:
        raise PlanError(f"--curve fitted cannot take {', '.join(refused)}: the fit decides the weights (and a dry run "
                        "cannot show them without fitting, which reads every checkpoint). Drop those options.")
    if not args.heldout:
        raise PlanError("--curve fitted needs --heldout FILE: a jsonl of {\"text\": ...} held-out documents to fit "
                        "the weights on (e.g. the study's heldout.jsonl).")
    config = FitConfig(steps=args.fit_steps, lr=args.fit_lr, tol=args.fit_tol, method=args.fit_method,
                       monotone=args.fit_monotone,
                       init=args.fit_init, fit_fraction=args.fit_fraction, seed=args.fit_seed,
                       seq_len=args.fit_seq_len)
    fitted = fit_window(window.checkpoints, args.heldout, config, tokenizer=args.tokenizer, device=args.fit_device)
    p = fitted.provenance
    schedule = implied_schedule(fitted.weights)
    print(f"fitted weights {[round(w, 4) for w in fitted.weights]} for steps {[c.step for c in window.checkpoints]}: "
          f"fit loss {p['fit_loss_start']:.4f} -> {p['fit_loss_end']:.4f} on {len(p['fit_documents'])} documents, "
          f"test loss {p['test_loss_start']:.4f} -> {p['test_loss_end']:.4f} on {len(p['test_documents'])} "
          f"({p['loss_unit']}); implied LR multipliers {[round(x, 4) for x in schedule.multipliers]}",
          )
    return build_plan(window, weights=fitted.weights, fit=p, dtype=args.dtype, accumulate=args.accumulate,
                      identify=False)
