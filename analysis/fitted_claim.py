"""The fitted-weights claim: do weights fitted on held-out text beat the best closed-form curve of the same window?

Claim: "fitted weights beat the best closed-form curve by more than the smallest detectable difference",
on held-out bits per byte of the *test* split (``merge.fit.score_on=test``: every variant was scored on
documents the fit never saw). The comparator is picked among the K closed-form curves (mean, 1-sqrt, cosine,
WMA, …; plain merges of the fitted merge's window, natural order, no extrapolation): the one with the lowest
bpb against the fitted merge over the seeds both have. ``d = bpb(best closed form) − bpb(fitted)`` (positive:
fitted better) gets the project's interval (``analysis.evidence``: per-document differences clustered by
source text, plus the spread of the per-seed differences at two or more seeds), corrected for the pick by
max-t over the K candidates' joint differences (sharper than Bonferroni for correlated merges of one window).
The pick favours the rival, so the correction is what keeps "not reproduced" honest and only makes
"reproduced" conservative.

Outcomes (``RULE``): **reproduced** when the interval of d lies above 0; **not reproduced** when it lies below
the equivalence margin m (``analysis.margin_bpb``): the best closed form significantly better, or the fit's gain
surely smaller than m; **inconclusive** otherwise, so a null whose interval reaches past m is never "not
reproduced". Without an interval (one seed, no per-document values) the outcome is "unconfirmed". The smallest
detectable difference (SDD, ``wsm_exp.evaluation.clustered.detectable``: (critical + z_power)·se) stands
beside d, so "inconclusive" says whether more seeds could settle it.

Example (three seeds, fitted better by about 0.01 bpb in each):
    >>> from analysis.load import prepared
    >>> from wsm_exp.sweep.spec.variants import merge_variant
    >>> rows = [dict(**merge_variant(curve=c, steps=[1, 2], weights=[0.5 + 0.1 * s * (c == "fitted"), 0.5
    ...                              - 0.1 * s * (c == "fitted")], interval=1, duration=2, seed=s).row_fields(
    ...              tokens_per_step=1, branch_start=0, branch_steps=2), task="wsm_heldout_bpb", category="heldout",
    ...              metric="bits_per_byte", value=v + 0.003 * s, status="ok", model_hash=f"{c}{s}")
    ...         for s in range(3) for c, v in (("fitted", 2.20), ("mean", 2.21), ("1-sqrt", 2.22))]
    >>> row = fitted_claim(prepared(pd.DataFrame(rows)))
    >>> row["best_closed_form"], row["candidates"], row["outcome"]
    ('mean', 2, 'reproduced')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from analysis.evidence import Evidence
from analysis.implied_schedule import implied_figure, implied_table
from analysis.load import DESIGN, model_scores
from analysis.rules import Thresholds

CLAIM = "fitted weights beat the best closed-form curve by more than the smallest detectable difference"
RULE = ("reproduced when the 95% interval of d (max-t over the K closed forms) lies above 0; not reproduced when it "
        "lies below the margin {margin} (a closed form significantly better, or the fit's gain surely below the "
        "margin); else inconclusive")
HELDOUT_TASK, BPB, METRIC = "wsm_heldout_bpb", "bits_per_byte", "heldout_bpb"
FITTED = "fitted"
NOT_CLOSED_FORM = (FITTED, "explicit", "none")


def heldout(frame: pd.DataFrame) -> pd.DataFrame:
    """The ok held-out bpb rows (one per variant), with the window's steps as a column to match on."""
    ok = frame[(frame["status"] == "ok") & (frame["task"] == HELDOUT_TASK) & (frame["metric"] == BPB)]
    return ok.drop_duplicates("variant", keep="last")


def closed_form(rows: pd.DataFrame, steps: str) -> pd.DataFrame:
    """Plain WSM merges by a named curve over the window ``steps`` (the fitted merge's)."""
    plain = (rows["kind"] == "wsm") & (rows["steps"] == steps) & ~rows["curve"].isin(NOT_CLOSED_FORM)
    plain &= ~rows["curve"].astype(str).str.contains("reverse|scramble|ex[+-]", regex=True)
    if "extrapolate" in rows:
        plain &= rows["extrapolate"].fillna(0.0) == 0.0
    if "merge_order" in rows:
        plain &= rows["merge_order"].fillna("natural") == "natural"
    return rows[plain]


def fitted_claim(frame: pd.DataFrame, samples: Mapping[str, pd.DataFrame] | None = None,
                 thresholds: Thresholds = Thresholds()) -> dict:
    """The claim's row: d, its interval, the SDD, outcome and verdict, K, seeds, what the interval covers.

    ``frame``: results rows as the report loads them (``analysis.load``). ``samples``: per-document values by
    model hash (else read from each sweep folder's samples/), as everywhere in the report.
    """
    margin = thresholds.margin(METRIC)
    base = {"claim": CLAIM, "metric": "held-out bpb (test split)", "best_closed_form": "", "candidates": 0,
            "seeds": 0, "fitted_bpb": math.nan, "best_closed_form_bpb": math.nan, "difference": math.nan,
            "ci_low": math.nan, "ci_high": math.nan, "sdd": math.nan, "covers": "", "verdict": "not tested",
            "outcome": "not tested", "rule": RULE.format(margin=margin)}
    rows = heldout(frame)
    fitted = rows[(rows["kind"] == "wsm") & (rows["curve"] == FITTED)]
    if fitted.empty:
        return {**base, "covers": "no fitted merge in these results"}
    steps = fitted["steps"].iloc[0]
    rivals = closed_form(rows, steps)
    if rivals.empty:
        return {**base, "covers": "no closed-form merge of the fitted merge's window"}
    variants = set(fitted.loc[fitted["steps"] == steps, "variant"]) | set(rivals["variant"])
    scores = model_scores(frame[frame["variant"].isin(variants)])
    scores.loc[scores["curve"] == FITTED, "weights_hash"] = FITTED  # one design: each seed fits its own weights
    keys = [c for c in DESIGN if c in scores]
    designs = scores.drop_duplicates(keys)
    reference = designs[designs["curve"] == FITTED].iloc[0]
    candidates = designs[designs["curve"] != FITTED]
    evidence = Evidence(frame, scores, dict(samples) if samples is not None else None)
    best, c = evidence.compare_best(candidates, reference, METRIC, power=thresholds.power)
    if best is None:
        return {**base, "covers": "no seed shared by the fitted merge and a closed form"}
    fitted_seeds, rival_seeds = (evidence.models(design)[METRIC] for design in (reference, best))
    shared = sorted(set(fitted_seeds.index) & set(rival_seeds.index))
    if math.isnan(c.ci_low):
        outcome = "unconfirmed"
    elif c.ci_low > 0:
        outcome = "reproduced"
    elif c.ci_high < margin:
        outcome = "not reproduced"
    else:
        outcome = "inconclusive"
    return {**base, "best_closed_form": str(best["curve"]), "candidates": c.candidates, "seeds": len(shared),
            "fitted_bpb": float(fitted_seeds[shared].mean()), "best_closed_form_bpb": float(rival_seeds[shared].mean()),
            "difference": c.mean, "ci_low": c.ci_low, "ci_high": c.ci_high, "sdd": c.detectable,
            "covers": f"{c.noise}; max-t over K={c.candidates}", "verdict": c.phrase(outcome), "outcome": outcome}


def seed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Held-out bpb (test split) per seed of the fitted merge, every closed-form curve of its window, the WSD
    decays and the raw checkpoint at the window's end: the table docs/beyond.md §5 shows.

    >>> rows = [dict(variant=f"{c}-s0", kind=k, curve=c, seed=0, steps="[1, 2]", task="wsm_heldout_bpb",
    ...              metric="bits_per_byte", value=v, status="ok", model_hash=c)
    ...         for c, k, v in (("fitted", "wsm", 2.2), ("mean", "wsm", 2.21), ("1-sqrt", "wsd", 2.25))]
    >>> list(seed_table(pd.DataFrame(rows)).columns)
    ['fitted', 'mean', 'WSD 1-sqrt']
    """
    rows = heldout(frame)
    fitted = rows[(rows["kind"] == "wsm") & (rows["curve"] == FITTED)]
    if fitted.empty:
        return pd.DataFrame()
    steps = fitted["steps"].iloc[0]
    columns = {"fitted": fitted[fitted["steps"] == steps]}
    for curve, group in closed_form(rows, steps).groupby("curve", sort=False):
        columns[str(curve)] = group
    end = int(str(steps).strip("[]").split(",")[-1])
    for curve, group in rows[rows["kind"] == "wsd"].groupby("curve", sort=False):
        columns[f"WSD {curve}"] = group
    raw = rows[(rows["kind"] == "raw") & (rows["steps"] == f"[{end}]")]
    if not raw.empty:
        columns["raw"] = raw
    return pd.DataFrame({name: group.set_index("seed")["value"] for name, group in columns.items()}).sort_index()


def fit_records(frame: pd.DataFrame) -> list[dict]:
    """The fits the jobs kept (``<sweep_dir>/fits/<variant>.json``: weights, split, losses), by seed."""
    records = []
    for folder in frame["sweep_dir"].dropna().unique() if "sweep_dir" in frame else []:
        for path in sorted((Path(folder) / "fits").glob("*.json")):
            records.append(json.loads(path.read_text()))
    return sorted(records, key=lambda r: (r["seed"], r["variant"]))


def documents_line(records: list[dict]) -> str:
    """Which held-out documents the fit used and which every variant was scored on."""
    if not records:
        return "No fit records were found (fits/<variant>.json); the split is unknown to this report."
    p = records[0]["provenance"]
    same = all(r["provenance"]["fit_documents"] == p["fit_documents"] for r in records)
    return (f"Held-out file {p['heldout']} (sha256 {p['heldout_digest']}), split seed {p['split_seed']}, fit fraction "
            f"{p['fit_fraction']:g}: the fit used documents {p['fit_documents']} ({len(p['fit_documents'])}); every "
            f"variant, fitted and not, was scored on the test documents {p['test_documents']} "
            f"({len(p['test_documents'])}){'' if same else ' (the split differs between fits: check the settings)'}.")


def section(frame: pd.DataFrame, out: Path, thresholds: Thresholds = Thresholds()) \
        -> tuple[str, dict[str, pd.DataFrame], list[Path]]:
    """The report's fitted-weights part: the claim, the per-seed table, the implied schedule (table and
    ``figures/implied_schedule.png``) and which documents each used; ("", {}, []) without a fitted merge."""
    table = seed_table(frame)
    if table.empty:
        return "", {}, []
    claim = pd.DataFrame([fitted_claim(frame, thresholds=thresholds)])
    records = fit_records(frame)
    weights = {f"fitted s{r['seed']}": r["weights"] for r in records}
    implied = implied_table(weights) if weights else pd.DataFrame()
    figure = [implied_figure(weights, out / "figures")] if weights else []
    shown = table.reset_index()
    shown["seed"] = shown["seed"].astype(int)
    markdown = shown.astype({"seed": str}).to_markdown(index=False, floatfmt=".4f")  # as floats: "0.0000"
    lines = ["## Fitted merge weights (docs/beyond.md §5)", "", documents_line(records), "",
             "Held-out bits per byte on the test split, per seed:", "", markdown,
             "", claim[["claim", "best_closed_form", "candidates", "seeds", "difference", "ci_low", "ci_high", "sdd",
                        "covers", "verdict"]].to_markdown(index=False, floatfmt="+.4f"), "",
             f"d = bpb(best closed form) − bpb(fitted), positive when the fit wins; rule: {claim['rule'].iloc[0]}.", "",
             "Implied learning-rate multipliers of the fitted weights (Theorem 3.1 inverted):", "",
             implied.to_markdown(index=False, floatfmt=".4f") if not implied.empty else "(no fit records)", "",
             *[f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figure]]
    return "\n".join(lines), {"fitted_claim": claim, "fitted_seeds": shown, "implied_schedule": implied}, figure
