"""The report's words in one place: findings rows, claim sentences, interval and markdown formatting.

Example:
    >>> interval(-0.0613, -0.0477, 4)
    '[-0.0613, -0.0477]'
    >>> claim_row("c", "a − b", metric="overall")["verdict"]
    'not tested'
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.stats import Comparison, seeds_needed

COLUMNS = ["claim", "metric", "contrast", "verdict", "outcome", "difference", "ci95", "noise", "detectable", "rule",
           "eval_ci95", "seed_ci95", "candidates", "seeds", "seed_sd", "doc_se", "ci_low", "ci_high", "evidence"]
SIGN_RULE = "reproduced when the 95% interval lies on the claimed side of 0; not reproduced when on the other side"
EQUIVALENCE_RULE = ("reproduced when the whole 95% interval of the gain stays below the margin {margin}; not reproduced "
                    "when the gain is beyond the noise; else inconclusive")
AT_LEAST_RULE = ("reproduced when the interval rules out A being worse than B by more than the margin {margin}; not "
                 "reproduced when A is worse beyond the noise")
ALL_PARTS_RULE = "reproduced only when every part is; one part not reproduced refutes it; else inconclusive"


def digits(metric: str) -> int:
    """Decimals a metric is shown with (losses need 4)."""
    return 4 if "bpb" in str(metric) else 2


def interval(low: float, high: float, places: int) -> str:
    return "" if math.isnan(low) else f"[{low:+.{places}f}, {high:+.{places}f}]"


def claim_row(claim: str, contrast: str, comparison: Comparison | None = None, evidence: str = "",
              outcome: str | None = None, metric: str = "", rule: str = SIGN_RULE, worded_by: Comparison | None = None) \
        -> dict:
    """One findings row: the verdict worded with what its interval covers, the interval, the smallest difference
    this run could detect (80% power) and the rule that made the verdict. A claim of several parts has no
    numbers of its own: ``worded_by`` (one of its parts) words its verdict."""
    if comparison is None:
        worded = worded_by.phrase(outcome) if worded_by is not None and outcome else outcome
        return {"claim": claim, "metric": metric, "contrast": contrast, "verdict": worded or "not tested",
                "outcome": outcome or "not tested", "difference": math.nan, "ci95": "", "noise": "",
                "detectable": math.nan, "rule": rule if worded_by is not None else "", "eval_ci95": "", "seed_ci95": "",
                "candidates": 0, "seeds": 0, "seed_sd": math.nan, "doc_se": math.nan,
                "ci_low": math.nan, "ci_high": math.nan,
                "evidence": evidence or "the sweeps in this report do not cover it"}
    places = digits(metric)
    outcome = outcome or comparison.outcome
    return {"claim": claim, "metric": metric, "contrast": contrast, "verdict": comparison.phrase(outcome),
            "outcome": outcome, "difference": round(comparison.mean, places + 1),
            "ci95": interval(comparison.ci_low, comparison.ci_high, places), "noise": comparison.noise,
            "detectable": round(comparison.detectable, places + 1), "rule": rule,
            "eval_ci95": interval(comparison.eval_low, comparison.eval_high, places),
            "seed_ci95": interval(comparison.seed_low, comparison.seed_high, places),
            "candidates": comparison.candidates, "seeds": comparison.seeds, "seed_sd": comparison.seed_sd,
            "doc_se": comparison.doc_se, "ci_low": comparison.ci_low,
            "ci_high": comparison.ci_high, "evidence": evidence}


def say(c: Comparison, metric: str, outcome: str | None = None) -> str:
    """A part of a claim in a few words: difference, interval, what it covers, verdict."""
    places = digits(metric)
    shown = interval(c.ci_low, c.ci_high, places) or "no interval"
    return f"{metric} {c.mean:+.{places}f} {shown} ({c.noise}): {c.phrase(outcome or c.outcome)}"


def seeds_note(row: pd.Series) -> str:
    """What more seeds would give: at one seed a plain statement; at two or more, with the measured seed spread,
    how many seeds this difference needs (analysis.stats.seeds_needed)."""
    if row["seeds"] < 2:
        return " Training seeds are not covered: rerun with seed=0,1,2 to measure their spread."
    if pd.isna(row.get("seed_sd")) or row["outcome"] == "reproduced":
        return ""
    se = row.get("doc_se")
    needed = seeds_needed(float(row["difference"]), float(row["seed_sd"]), 0.0 if pd.isna(se) else float(se))
    return (f" At the measured seed spread (SD {row['seed_sd']:.3g}) this difference needs "
            + (f"{needed} seeds." if needed else "more than 50 seeds (or more documents)."))


def headline(claims: pd.DataFrame) -> list[str]:
    """One sentence per tested claim (metric, effect, interval, what it covers, smallest detectable difference,
    verdict); the claims this design cannot test in one closing line (their reasons are in the Findings table)."""
    lines, untested = [], []
    for _, row in claims.iterrows():
        if pd.isna(row["difference"]):
            if row["verdict"] == "not tested":
                untested.append(row["claim"])
            else:
                rule = f" Rule: {row['rule']}." if row.get("rule") else ""
                lines.append(f"- **{row['claim']}**: **{row['verdict']}** ({row['evidence']}).{rule}")
            continue
        places = digits(row["metric"])
        direction = " (lower is better)" if str(row["metric"]).endswith("bpb") else ""
        text = f"95% interval {row['ci95']} covering {row['noise']}" if row["ci95"] else f"no interval: {row['noise']}"
        if row["candidates"] and row["candidates"] > 1:
            text += f", corrected for picking the best of {int(row['candidates'])} candidates (max-t)"
        if pd.notna(row.get("detectable")):
            text += f"; smallest difference this run detects: {row['detectable']:.{places}f}"
        lines.append(f"- **{row['claim']}**: on {row['metric']}{direction}, {row['contrast']} = "
                     f"{row['difference']:+.{places}f}, {text}: **{row['verdict']}**.{seeds_note(row)}")
    if untested:
        lines.append(f"- Not tested by this design (reasons under Findings): {'; '.join(untested)}.")
    return lines


def markdown(table: pd.DataFrame, places: int = 2) -> str:
    """Markdown; a column ``c`` with a ``c_std`` twin shows as "mean ± std" (CSVs keep both); losses get 4 decimals.

    >>> markdown(pd.DataFrame({"x": [1.234], "x_std": [0.1]})).splitlines()[-1]
    '| 1.23 ± 0.10 |'
    """
    if table.empty:
        return "_(no rows)_\n"
    shown = {c: max(places, 4) if "bpb" in c else places for c in table.columns}
    table = table.round(shown)
    for std in [c for c in table.columns if c.endswith("_std") and c[:-4] in table.columns]:
        mean, n = std[:-4], shown[std]
        if table[std].notna().any():
            table[mean] = [m if pd.isna(s) or pd.isna(m) else f"{m:.{n}f} ± {s:.{n}f}"
                           for m, s in zip(table[mean], table[std])]
        table = table.drop(columns=std)
    return table.to_markdown(index=False) + "\n"


def console_text(claims: pd.DataFrame) -> str:
    """The findings for the terminal: per claim its verdict (worded with what the interval covers), the
    difference, the interval and the smallest detectable difference.

    >>> print(console_text(pd.DataFrame([claim_row("c", "a − b", metric="overall")])))
    Findings:
    - c: not tested (the sweeps in this report do not cover it)
    """
    lines = ["Findings:"]
    for _, row in claims.iterrows():
        if pd.isna(row["difference"]):
            lines.append(f"- {row['claim']}: {row['verdict']} ({row['evidence']})")
            continue
        places = digits(row["metric"])
        shown = f" {row['ci95']}" if row["ci95"] else ""
        power = f"; detectable {row['detectable']:.{places}f}" if pd.notna(row.get("detectable")) else ""
        lines.append(f"- {row['claim']}: {row['verdict']} — {row['contrast']} {row['difference']:+.{places}f}"
                     f"{shown} ({row['noise']}{power})")
    return "\n".join(lines)
