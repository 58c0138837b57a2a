"""The findings checklist: each WSM claim, this run's verdict, its interval, the noise it covers.

Every "better" claim is judged on the suite's primary metric (``eval.primary``: held-out bits per byte
for ``tiny``, the overall score otherwise); the other metric is shown beside it in the evidence.
Merges are N ≥ 2 (N = 1 is the raw checkpoint). Picking the best of K candidates in the claim's favour
is paid for with the max-t quantile over the K candidates (analysis.stats). A claim of several parts
gets one row per part (its own interval) and a row with the combining rule. A score claim whose tasks
are all not significantly above chance carries no verdict. Margins and cut-offs: analysis.rules.Thresholds.

Example:
    >>> import pandas as pd
    >>> findings(pd.DataFrame(columns=["kind"]))["verdict"].unique().tolist()
    ['not tested']
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from analysis.evidence import Evidence
from analysis.factors import duration_contrast, factor_importance
from analysis.prose import ALL_PARTS_RULE, AT_LEAST_RULE, COLUMNS, EQUIVALENCE_RULE, claim_row, say
from analysis.rules import Thresholds, best
from analysis.sft import CLAIM as SFT_PERSISTS
from analysis.sft import sft_verdict, table2
from analysis.stats import Comparison, compare
from analysis.verdicts import AT_CHANCE, all_parts, at_least, no_gain
from analysis.tables import by_design, label, merges

WSM_BEATS_WSD = "WSM beats WSD"
LOSS_VS_SCORE = "merged models can have higher loss yet better scores"
DURATION = "merge duration matters more than interval and quantity"
CURVES = "1-sqrt ≥ mean > EMA"
GRANULARITY = "finer granularity is slightly better at fixed duration"
DECAY_THEN_MERGE = "decay-then-merge gives no gain over the decay"
MERGE_THEN_DECAY = "merge-then-decay gives no gain"
CLAIMS = [WSM_BEATS_WSD, LOSS_VS_SCORE, DURATION, CURVES, GRANULARITY, DECAY_THEN_MERGE, MERGE_THEN_DECAY]
LOSS_PART, SCORE_PART = f"{LOSS_VS_SCORE}: loss part", f"{LOSS_VS_SCORE}: score part"
AT_LEAST_PART, ABOVE_PART = f"{CURVES}: 1-sqrt ≥ mean", f"{CURVES}: mean > EMA"
CONTRAST = {  # what "difference" subtracts, per claim and part
    WSM_BEATS_WSD: "best merge − best decay", LOSS_VS_SCORE: "both parts below",
    LOSS_PART: "best merge − best decay (loss; the claim: higher)", SCORE_PART: "best merge − best decay (score)",
    DURATION: "R²(D) − R²(rival)", CURVES: "both parts below", AT_LEAST_PART: "best 1-sqrt − best mean",
    ABOVE_PART: "best mean − best EMA", GRANULARITY: "finest Δ − coarsest Δ",
    DECAY_THEN_MERGE: "best merge inside the decay − the decay's end",
    MERGE_THEN_DECAY: "decay from the merge − decay from its newest checkpoint",
    SFT_PERSISTS: "WSM base's best SFT epoch − WSD base's (Overall)",
}
UNITS = {"overall": "overall score (points)", "heldout_bpb": "held-out bits per byte"}


def _row(claim: str, comparison: Comparison | None = None, evidence: str = "", outcome: str | None = None,
         metric: str = "", rule: str | None = None, worded_by: Comparison | None = None) -> dict:
    return claim_row(claim, CONTRAST[claim], comparison, evidence, outcome, metric,
                     **({"rule": rule} if rule else {}), worded_by=worded_by)


def _other(primary: str) -> str:
    return "overall" if primary == "heldout_bpb" else "heldout_bpb"


def findings(scores: pd.DataFrame, frame: pd.DataFrame | None = None, thresholds: Thresholds = Thresholds(),
             samples: dict | None = None) -> pd.DataFrame:
    """One row per claim (and per part of a claim of several): verdict worded with what its interval covers,
    the difference on the primary metric, its interval, the smallest detectable difference and the rule.
    ``samples`` (model hash → per-document values) replaces the sweep folders' files (simulations)."""
    if scores.empty or "overall" not in scores:
        return pd.DataFrame([_row(c) for c in CLAIMS], columns=COLUMNS)
    frame = frame if frame is not None else pd.DataFrame(columns=["status", "task", "metric", "value", "stderr",
                                                                  "variant", "category"])
    primary = str(frame["primary"].iloc[0]) if "primary" in frame and len(frame) else "overall"
    if primary == "heldout_bpb" and scores["heldout_bpb"].isna().all():
        primary = "overall"
    ev, t = Evidence(frame, scores, samples), thresholds
    designs = by_design(scores)
    wsm = merges(designs)
    wsd = designs[(designs["kind"] == "wsd") & designs["branch"].astype(str).str.startswith("wsd_")]
    rows = [*_wsm_beats_wsd(ev, wsm, wsd, primary, t), _duration_matters_most(scores, primary, t),
            *_curves(ev, wsm, primary, t), _granularity(ev, wsm, primary, t),
            _decay_then_merge(ev, designs, wsd, primary, t), _merge_then_decay(ev, designs, primary, t)]
    if "kind" in frame and (frame["kind"] == "sft").any():  # the SFT sweep's claim (paper Table 2)
        rows.append(_sft_persists(frame, samples))
    return pd.DataFrame(rows, columns=COLUMNS)


def _sft_persists(frame: pd.DataFrame, samples: dict | None) -> dict:
    best_rows = table2(frame)
    if best_rows.empty or set(best_rows["row"]) != {"WSD", "WSM"}:
        return _row(SFT_PERSISTS, metric="overall", evidence="needs SFT rows of both bases (sweep sft)")
    epochs = ", ".join(f"{r['row']} epochs {r['best_epochs']}" for _, r in best_rows.iterrows())
    return _row(SFT_PERSISTS, sft_verdict(frame, samples), f"best epoch per base and seed by Overall ({epochs}); "
                "paired by seed and by document", metric="overall")


def _chance(ev: Evidence, metric: str) -> str | None:
    """The outcome that replaces a score claim's own when its tasks are not significantly above chance."""
    return AT_CHANCE if metric != "heldout_bpb" and not metric.startswith("R²") and ev.at_chance(metric) else None


def _wsm_beats_wsd(ev: Evidence, wsm, wsd, primary: str, t: Thresholds) -> list[dict]:
    best_wsd = best(wsd, primary)
    pool = wsm[wsm[primary].notna()]
    if pool.empty or best_wsd is None:
        return [_row(WSM_BEATS_WSD, metric=primary), _row(LOSS_VS_SCORE, metric="heldout_bpb + overall")]
    best_wsm, c = ev.compare_best(pool, best_wsd, primary, power=t.power)
    other = _other(primary)
    other_c = ev.compare(best_wsm, best_wsd, other, power=t.power)
    beside = f"{other}: {_chance(ev, other)}" if _chance(ev, other) else say(other_c, other)
    evidence = (f"best merge: {label(best_wsm)}, among {len(pool)} merges (N ≥ 2; the pick is corrected), vs best "
                f"decay: {label(best_wsd)}, among {len(wsd)} decays (picking the best decay works against the "
                f"claim: no correction); beside it, {beside}")
    rows = [_row(WSM_BEATS_WSD, c, evidence, outcome=_chance(ev, primary), metric=primary)]
    # higher loss (merge − decay > 0) and better score (> 0): both parts needed
    loss = ev.compare(best_wsm, best_wsd, "heldout_bpb", claimed_higher=True, power=t.power)
    if loss.outcome == "not tested":
        return rows + [_row(LOSS_VS_SCORE, metric="heldout_bpb + overall", evidence="needs held-out bits per byte")]
    _, score = ev.compare_best(pool, best_wsd, "overall", by=primary, power=t.power)
    score_outcome = _chance(ev, "overall") or score.outcome
    parts = [_row(LOSS_PART, loss, "the merge chosen by the primary metric; its loss must be higher",
                  metric="heldout_bpb"),
             _row(SCORE_PART, score, "same two models; corrected for the merge pick", outcome=score_outcome,
                  metric="overall")]
    outcome = all_parts([loss.outcome, score_outcome])
    summary = f"loss part: {say(loss, 'heldout_bpb')}; score part: {say(score, 'overall', score_outcome)}"
    return rows + [_row(LOSS_VS_SCORE, evidence=summary, outcome=outcome, metric="heldout_bpb + overall",
                        rule=ALL_PARTS_RULE, worded_by=score), *parts]


def _at_least(c: Comparison, metric: str, t: Thresholds) -> str:
    """Outcome of "A ≥ B" (analysis.verdicts.at_least with the metric's margin)."""
    if c.outcome in ("unconfirmed", "not tested"):
        return c.outcome
    return at_least(c.ci_low, c.ci_high, c.higher_is_better, t.margin(metric))


def _curves(ev: Evidence, wsm, primary: str, t: Thresholds) -> list[dict]:
    pools = {curve: pool[pool[primary].notna()] for curve, pool in wsm.groupby("curve")}
    pools["mean"] = pools.get("mean", pools.get("linear"))
    if not all(pools.get(c) is not None and not pools[c].empty for c in ("1-sqrt", "mean", "ema")):
        return [_row(CURVES, metric=primary, evidence="needs the method sweep (1-sqrt, mean and EMA merges, N ≥ 2)")]
    override = _chance(ev, primary)
    _, first = ev.compare_best(pools["1-sqrt"], best(pools["mean"], primary), primary, power=t.power)
    _, second = ev.compare_best(pools["mean"], best(pools["ema"], primary), primary, power=t.power)
    outcomes = [override or _at_least(first, primary, t), override or second.outcome]
    margin = t.margin(primary)
    parts = [_row(AT_LEAST_PART, first, f"best 1-sqrt of {len(pools['1-sqrt'])} vs the best mean", outcomes[0],
                  primary, AT_LEAST_RULE.format(margin=margin)),
             _row(ABOVE_PART, second, f"best mean of {len(pools['mean'])} vs the best EMA", outcomes[1], primary)]
    evidence = f"1-sqrt ≥ mean: {say(first, primary, outcomes[0])}; mean > EMA: {say(second, primary, outcomes[1])}"
    return [_row(CURVES, evidence=evidence, outcome=all_parts(outcomes), metric=primary, rule=ALL_PARTS_RULE,
                 worded_by=second), *parts]


def _granularity(ev: Evidence, wsm, primary: str, t: Thresholds) -> dict:
    """Finest vs coarsest Δ within one window family (same curve, D, end, series), the family chosen by design
    (most intervals, then the longest D), never by outcome, so no selection correction is due."""
    families = [(pool["interval_steps"].nunique(), key[1], key, pool)
                for key, pool in wsm.groupby(["curve", "duration_steps", "end_step", "branch"])
                if pool["interval_steps"].nunique() >= 2]
    if not families:
        return _row(GRANULARITY, metric=primary,
                    evidence="needs several intervals at one duration with N ≥ 2 (the interval sweep)")
    _, _, (curve, duration, end, _), pool = max(families, key=lambda f: (f[0], f[1]))
    ordered = pool.sort_values("interval_steps")
    fine, coarse = ordered.iloc[0], ordered.iloc[-1]
    c = ev.compare(fine, coarse, primary, power=t.power)
    return _row(GRANULARITY, c, f"{curve}, D={duration}, end={end}: Δ={fine['interval_steps']} (N={fine['quantity']}) "
                f"vs Δ={coarse['interval_steps']} (N={coarse['quantity']}); the family chosen by design among "
                f"{len(families)}", outcome=_chance(ev, primary), metric=primary)


def _duration_matters_most(scores: pd.DataFrame, primary: str, t: Thresholds) -> dict:
    """R²(D) against the larger of R²(Δ), R²(N), per seed, so the verdict respects the noise."""
    metric = primary
    importance = factor_importance(scores, metric).set_index("factor")["r2"]
    merged = scores[(scores["kind"] == "wsm") & (scores["quantity"] >= 2)]
    independent = merged["interval_steps"].nunique() >= 2 and merged["quantity"].nunique() >= 2
    if not independent or importance.notna().sum() < 2:
        return _row(DURATION, metric=f"R² of {metric}",
                    evidence="needs merges (N ≥ 2) that vary Δ and N independently (the grid sweep); "
                             "with one factor fixed, D and the varied factor are the same axis")
    per_seed = [factor_importance(group, metric).set_index("factor")["r2"]
                for _, group in scores[scores["seed"].notna()].groupby("seed")]
    diffs, rival = duration_contrast(importance.to_numpy(), np.array([r.to_numpy() for r in per_seed]))
    rival = importance.index[int(rival)]
    c = compare(list(diffs), [0.0] * len(diffs), power=t.power)
    evidence = f"R² of {metric} on log2 factor (N ≥ 2 merges, all seeds): " + \
               ", ".join(f"{k} {v:.2f}" for k, v in importance.items())
    evidence += f"; per-seed R²(D) − R²({rival.split()[-1]}) (seed noise only: R² has no per-document form)"
    return _row(DURATION, c, evidence, metric=f"R² of {metric}")


def _decay_then_merge(ev: Evidence, designs, wsd, primary: str, t: Thresholds) -> dict:
    """Best merge of a decay branch's checkpoints vs that decay's last checkpoint (Figure 5b)."""
    pool = merges(designs, kind="decay_merge")
    first = best(pool, primary)
    if first is None:
        return _row(DECAY_THEN_MERGE, metric=primary, evidence="needs the decay_then_merge sweep (paper Figure 5b)")
    ends = wsd[wsd["branch"] == first["branch"]]
    if ends.empty:
        return _row(DECAY_THEN_MERGE, metric=primary, evidence=f"no evaluated end of {first['branch']} to compare with")
    pool = pool[(pool["branch"] == first["branch"]) & pool[primary].notna()]
    return _no_gain(ev, DECAY_THEN_MERGE, pool, ends.sort_values("end_step").iloc[-1], primary, t)


def _merge_then_decay(ev: Evidence, designs, primary: str, t: Thresholds) -> dict:
    """Best decay started from a merge vs the same decay (same shape, length and end) started from the merge's
    newest checkpoint (Figure 5c)."""
    pool = designs[(designs["kind"] == "merge_then_decay") & designs[primary].notna()]
    first = best(pool, primary)
    if first is None:
        return _row(MERGE_THEN_DECAY, metric=primary, evidence="needs the merge_then_decay sweep (paper Figure 5c)")
    shape = _decay_shape(ev, first)
    plain = designs[(designs["kind"] == "wsd") & (designs["branch_kind"] == "fidelity") &
                    (designs["end_step"] == first["end_step"]) & (designs["duration_steps"] == first["duration_steps"])
                    & ((designs["curve"] == shape) if shape else True)]
    if plain.empty:
        return _row(MERGE_THEN_DECAY, metric=primary,
                    evidence=f"no evaluated plain {shape or ''} decay ending at step {first['end_step']}")
    same = pool[(pool["end_step"] == first["end_step"]) & (pool["duration_steps"] == first["duration_steps"])]
    return _no_gain(ev, MERGE_THEN_DECAY, same, plain.iloc[0], primary, t)


def _decay_shape(ev: Evidence, design: pd.Series) -> str:
    """A merge-then-decay's decay shape, from its variant name (``…-E<end>-<shape>-D<steps>-s<seed>``)."""
    models = ev.models(design)
    found = re.search(r"-E\d+-(.+)-D\d+-s\d+$", str(models["variant"].iloc[0])) if not models.empty else None
    return found.group(1) if found else ""


def _no_gain(ev: Evidence, claim: str, pool: pd.DataFrame, reference: pd.Series, primary: str, t: Thresholds) -> dict:
    """The best of ``pool`` gains nothing over ``reference``: reproduced when the interval of the gain (corrected
    for the pick) stays below the margin, refuted by a gain beyond the noise, inconclusive otherwise."""
    first, c = ev.compare_best(pool, reference, primary, power=t.power)
    outcome = c.outcome if c.outcome in ("unconfirmed", "not tested") else \
        no_gain(c.ci_low, c.ci_high, c.higher_is_better, t.margin(primary))
    other = _other(primary)
    beside = ""
    if first is not None and pd.notna(first.get(other)) and pd.notna(reference.get(other)):
        beside = f"; {other} {first[other]:.4f} vs {reference[other]:.4f}"
    name = label(first) if first is not None else "?"
    return _row(claim, c, f"best {name} of {len(pool)} vs {label(reference)}{beside}",
                outcome=_chance(ev, primary) or outcome, metric=primary,
                rule=EQUIVALENCE_RULE.format(margin=t.margin(primary)))
