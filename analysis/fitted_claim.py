"""The fitted-weights claim: do weights fitted on held-out text beat the best closed-form curve of the same window?

Claim: "fitted weights beat the best closed-form curve by more than the smallest detectable difference",
on held-out bits per byte of the *test* split (``merge.fit.score_on=test``: every variant was scored on
documents the fit never saw). The comparator is the closed-form curve (mean, 1-sqrt, cosine, WMA, …; plain
merges of the fitted merge's window, natural order, no extrapolation) with the lowest mean bpb over the
seeds both have. The difference ``d = bpb(best closed form) − bpb(fitted)`` (positive: fitted better) gets
a two-sided 95% interval, Bonferroni-adjusted for the K closed-form candidates the comparator was picked
from (the pick favours the comparator, so the adjustment only matters for the "not reproduced" side, and
is kept for both):

- two or more seeds: the t-interval of the per-seed differences (covers training seeds and evaluation);
- one seed with per-document values: the paired per-document interval (evaluation noise only);
- otherwise no interval.

The smallest detectable difference (SDD) is the project's (issue #24, ``stats.detectable`` on main): the
smallest true ``d`` this run finds with 80% power, ``(critical + z_0.8) · se``, shown beside ``d``. The
outcome follows the project's three-way rule on the interval: **reproduced** when it lies above 0 (the
fitted merge significantly better), **not reproduced** when it lies below 0 (the best closed form
significantly better) or below an equivalence ``margin`` when one is given, **inconclusive** otherwise
(then ``d`` against the SDD says whether more seeds could settle it); **untested** without an interval.

Example (three seeds, fitted better by about 0.01 bpb in each):
    >>> rows = [dict(variant=f"{c}-s{s}", kind="wsm", curve=c, seed=s, steps="[1, 2]", task="wsm_heldout_bpb",
    ...              metric="bits_per_byte", value=v + 0.003 * s, status="ok", model_hash=f"{c}{s}")
    ...         for s in range(3) for c, v in (("fitted", 2.20), ("mean", 2.21), ("1-sqrt", 2.22))]
    >>> row = fitted_claim(pd.DataFrame(rows))
    >>> row["best_closed_form"], row["candidates"], row["outcome"]
    ('mean', 2, 'reproduced')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.implied_schedule import implied_figure, implied_table
from analysis.stats import paired_difference, quantile

CLAIM = "fitted weights beat the best closed-form curve by more than the smallest detectable difference"
HELDOUT_TASK, BPB = "wsm_heldout_bpb", "bits_per_byte"
FITTED = "fitted"
POWER = 0.8  # the smallest detectable difference is found with this probability (the project's default)
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
    return rows[plain]


def fitted_claim(frame: pd.DataFrame, samples: Mapping[str, pd.DataFrame] | None = None,
                 margin: float | None = None) -> dict:
    """The claim's row: observed difference, interval, SDD, outcome, K, seeds, and what the interval covers.

    ``samples``: per-document values by model hash (columns doc_id, task, metric, value, weight), used for a
    one-seed interval. ``margin``: an equivalence margin in bpb (``d``'s interval below it: not reproduced).
    """
    rows = heldout(frame)
    fitted = rows[(rows["kind"] == "wsm") & (rows["curve"] == FITTED)]
    base = {"claim": CLAIM, "metric": "held-out bpb (test split)", "best_closed_form": "", "candidates": 0,
            "seeds": 0, "fitted_bpb": math.nan, "best_closed_form_bpb": math.nan, "difference": math.nan,
            "ci_low": math.nan, "ci_high": math.nan, "sdd": math.nan, "covers": "", "outcome": "untested"}
    if fitted.empty:
        return {**base, "covers": "no fitted merge in these results"}
    steps = fitted["steps"].iloc[0]
    fitted = fitted[fitted["steps"] == steps].set_index("seed")
    rivals = closed_form(rows, steps)
    if rivals.empty:
        return {**base, "covers": "no closed-form merge of the fitted merge's window"}
    seeds = sorted(set(fitted.index) & set(rivals["seed"]))
    means = rivals[rivals["seed"].isin(seeds)].groupby("curve")["value"].mean()
    best, k = str(means.idxmin()), int(len(means))
    rival = rivals[rivals["curve"] == best].set_index("seed")
    seeds = sorted(set(seeds) & set(rival.index))
    diffs = np.array([rival.loc[s, "value"] - fitted.loc[s, "value"] for s in seeds])
    row = {**base, "best_closed_form": best, "candidates": k, "seeds": len(seeds),
           "fitted_bpb": float(fitted.loc[seeds, "value"].mean()),
           "best_closed_form_bpb": float(rival.loc[seeds, "value"].mean()), "difference": float(diffs.mean())}
    if len(seeds) >= 2:
        se, critical = float(diffs.std(ddof=1)) / math.sqrt(len(seeds)), quantile(len(seeds) - 1, k)
        row["covers"] = f"training seeds + evaluation ({len(seeds)} seeds, t, Bonferroni K={k})"
    else:
        noise = _paired(samples, rival.loc[seeds[0], "model_hash"], fitted.loc[seeds[0], "model_hash"])
        if noise is None:
            return {**row, "covers": "none (1 seed, no per-document values)"}
        effect, se, docs = noise
        row["difference"] = effect
        critical = quantile(docs - 1, k)
        row["covers"] = f"evaluation noise only ({docs} test-split pieces, 1 seed, Bonferroni K={k})"
    low, high = row["difference"] - critical * se, row["difference"] + critical * se
    sdd = (critical + float(norm.ppf(POWER))) * se
    return {**row, "ci_low": low, "ci_high": high, "sdd": sdd, "outcome": outcome(low, high, margin)}


def outcome(low: float, high: float, margin: float | None = None) -> str:
    """reproduced / not reproduced / inconclusive from the interval of ``d`` (positive: fitted better).

    >>> outcome(0.001, 0.02), outcome(-0.02, -0.001), outcome(-0.01, 0.01), outcome(-0.001, 0.002, margin=0.005)
    ('reproduced', 'not reproduced', 'inconclusive', 'not reproduced')
    """
    if low > 0:
        return "reproduced"
    if high < 0 or (margin is not None and high < margin):
        return "not reproduced"
    return "inconclusive"


def _paired(samples: Mapping[str, pd.DataFrame] | None, a: str, b: str) -> tuple[float, float, int] | None:
    """(effect, se, documents) of the paired per-document bpb difference a − b, byte-weighted; None if unknown."""
    if not samples or a not in samples or b not in samples:
        return None
    da, db = (s[(s["task"] == HELDOUT_TASK) & (s["metric"] == BPB)] for s in (samples[a], samples[b]))
    joined = da.merge(db, on="doc_id", suffixes=("_a", "_b"))
    if len(joined) < 2:
        return None
    effect, se = paired_difference(joined["value_a"].to_numpy(), joined["value_b"].to_numpy(),
                                   joined["weight_a"].to_numpy())
    return float(effect), float(se), len(joined)


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


def section(frame: pd.DataFrame, out: Path) -> tuple[str, dict[str, pd.DataFrame], list[Path]]:
    """The report's fitted-weights part: the claim, the per-seed table, the implied schedule (table and
    ``figures/implied_schedule.png``) and which documents each used; ("", {}, []) without a fitted merge."""
    table = seed_table(frame)
    if table.empty:
        return "", {}, []
    claim = pd.DataFrame([fitted_claim(frame)])
    records = fit_records(frame)
    weights = {f"fitted s{r['seed']}": r["weights"] for r in records}
    implied = implied_table(weights) if weights else pd.DataFrame()
    figure = [implied_figure(weights, out / "figures")] if weights else []
    shown = table.reset_index().rename(columns={"seed": "seed"})
    lines = ["## Fitted merge weights (docs/beyond.md §5)", "", documents_line(records), "",
             "Held-out bits per byte on the test split, per seed:", "", shown.to_markdown(index=False, floatfmt=".4f"),
             "", claim[["claim", "best_closed_form", "candidates", "seeds", "difference", "ci_low", "ci_high", "sdd",
                        "covers", "outcome"]].to_markdown(index=False, floatfmt="+.4f"), "",
             "Implied learning-rate multipliers of the fitted weights (Theorem 3.1 inverted):", "",
             implied.to_markdown(index=False, floatfmt=".4f") if not implied.empty else "(no fit records)", "",
             *[f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figure]]
    return "\n".join(lines), {"fitted_claim": claim, "fitted_seeds": shown, "implied_schedule": implied}, figure
