"""Table 2 of the paper: both bases after the same SFT, the best epoch of each, beside the paper's.

Reads result rows of kind ``sft`` (wsm_exp/sweep/run/sft_job.py): branch ``sft_wsd`` / ``sft_wsm`` names the
base, ``epoch`` the SFT epoch (0 = the base before SFT). Per base and seed the best epoch ≥ 1 by
Overall (the mean over tasks of the primary metric, in percent) is kept, as the paper reports the
best of 5 epochs; the table averages those over seeds. The verdict on "WSM's advantage persists
after SFT" pairs the two bases' best-epoch Overall by seed and, where the sweep folder kept them, their
per-document values (``sft_verdict``: the one place to switch to another test), so one seed gets an
interval on evaluation noise as every other claim does. The best epoch is picked for each base alike, on
the same items, so the pick favours neither side and needs no correction.

Example:
    >>> table2(pd.DataFrame(columns=["kind"])).empty
    True
"""

from __future__ import annotations

import pandas as pd

from analysis.evidence import Evidence
from analysis.load import primary_metrics
from analysis.stats import Comparison, compare

COLUMNS = ["language", "knowledge", "math", "code", "reason", "agent", "overall"]  # the paper's Table 2
TABLE2_COLUMN = {"language": "language", "general_knowledge": "knowledge", "professional_knowledge": "knowledge",
                 "math": "math", "code": "code", "reason": "reason", "agent": "agent"}
CLAIM = "WSM's advantage persists after SFT"
ROWS = {"sft_wsd": "WSD", "sft_wsm": "WSM"}


def sft_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per SFT model: row (WSD/WSM), seed, epoch, Table 2 columns (percent), the base's design."""
    ok = frame[(frame["kind"] == "sft") & (frame["status"] == "ok")] if "status" in frame else frame.iloc[:0]
    if ok.empty:
        return pd.DataFrame(columns=["variant", "row", "seed", "epoch", "curve", "quantity", "duration_steps",
                                     "end_step", *COLUMNS])
    primary = primary_metrics(ok)
    is_primary = pd.Series([primary[t] == m for t, m in zip(ok["task"], ok["metric"])], index=ok.index)
    chosen = ok[is_primary & ok["metric"].ne("bits_per_byte")]
    chosen = chosen.assign(score=100 * chosen["value"], column=chosen["category"].map(TABLE2_COLUMN))
    design = ok.drop_duplicates("variant").set_index("variant")[["branch", "seed", "epoch", "curve", "quantity",
                                                                  "duration_steps", "end_step"]]
    columns = chosen.dropna(subset=["column"]).pivot_table(index="variant", columns="column", values="score",
                                                           aggfunc="mean")
    overall = chosen.groupby("variant")["score"].mean().rename("overall")
    table = design.join(columns).join(overall).reset_index()
    table["row"] = table["branch"].map(ROWS)
    for column in COLUMNS:
        if column not in table:
            table[column] = float("nan")
    return table[["variant", "row", "seed", "epoch", "curve", "quantity", "duration_steps", "end_step",
                  *COLUMNS]].sort_values(["row", "seed", "epoch"], ignore_index=True)


def best_epochs(scores: pd.DataFrame) -> pd.DataFrame:
    """Per base and seed, the fine-tuned epoch (≥ 1) with the highest Overall (ties: the earlier epoch)."""
    tuned = scores[(scores["epoch"] >= 1) & scores["overall"].notna() & scores["row"].notna()]
    if tuned.empty:
        return tuned
    ranked = tuned.sort_values(["row", "seed", "overall", "epoch"], ascending=[True, True, False, True])
    return ranked.drop_duplicates(["row", "seed"]).reset_index(drop=True)


def table2(frame: pd.DataFrame) -> pd.DataFrame:
    """WSD and WSM rows: the best epoch's columns, mean over seeds (``<col>_std`` across seeds)."""
    best = best_epochs(sft_scores(frame))
    if best.empty:
        return pd.DataFrame(columns=["row", "base", *COLUMNS, "overall_std", "best_epochs", "seeds"])
    rows = []
    for name, group in best.groupby("row", sort=True):
        first = group.iloc[0]
        base = (f"{first['curve']} merge (N={first['quantity']}, D={first['duration_steps']}, end={first['end_step']})"
                if name == "WSM" and first["quantity"] > 1 else f"{first['curve']} (end={first['end_step']})")
        means = group[COLUMNS].mean()
        stds = group[COLUMNS].std() if len(group) > 1 else group[COLUMNS].iloc[0] * float("nan")
        rows.append({"row": name, "base": base, **means.to_dict(),
                     **{f"{c}_std": stds[c] for c in COLUMNS}, "best_epochs": ",".join(map(str, group["epoch"])),
                     "seeds": len(group)})
    return pd.DataFrame(rows)


def sft_verdict(frame: pd.DataFrame, samples: dict | None = None) -> Comparison:
    """WSM's best-epoch Overall minus WSD's, paired by seed (seeds with both bases only) and by document where
    the per-document values are there (``samples``: model hash → values, else the sweep folder's files)."""
    best = best_epochs(sft_scores(frame))
    wide = best.pivot_table(index="seed", columns="row", values="overall").dropna()
    if not {"WSD", "WSM"} <= set(wide.columns):
        return compare([], [])
    models = frame.drop_duplicates("variant").set_index("variant")
    chosen = best.set_index(["seed", "row"])["variant"]
    pairs = [(_model(models, chosen[(seed, "WSM")]), _model(models, chosen[(seed, "WSD")])) for seed in wide.index]
    sft_rows = frame[frame["kind"] == "sft"] if "kind" in frame else frame
    noise = Evidence(sft_rows, pd.DataFrame(), samples).doc_noise(pairs, "overall")
    return compare(wide["WSM"].tolist(), wide["WSD"].tolist(), eval_noise=noise)


def _model(models: pd.DataFrame, variant: str) -> pd.Series:
    """A model's identity as Evidence reads it: its hash and where its per-document values are."""
    row = models.loc[variant]
    folder = row["samples_dir"] if "samples_dir" in row and row["samples_dir"] else \
        (f"{row['sweep_dir']}/samples" if "sweep_dir" in row else "")
    return pd.Series({"model_hash": row.get("model_hash", ""), "samples_dir": folder})


def table2_section(frame: pd.DataFrame, md, paper: list[str]) -> list[str]:
    """Markdown lines of the report's Table 2 section (none when the results hold no SFT rows).

    ``md`` renders a table (analysis.report._md); ``paper``: the lines of the paper's Table 2 with its legend
    (analysis.paper.paper_section).
    """
    table = table2(frame)
    if table.empty:
        return []
    verdict = sft_verdict(frame)
    per_epoch = sft_scores(frame)
    ci = "" if pd.isna(verdict.ci_low) else f", 95% CI [{verdict.ci_low:+.2f}, {verdict.ci_high:+.2f}]"
    shown = [c for c in COLUMNS if table[c].notna().any()]
    return [
        "## Table 2: after SFT (best epoch of each base)", "",
        "The same SFT on both bases (same items, order, steps, LR schedule and seed); every epoch is evaluated "
        "and the best epoch ≥ 1 by Overall is kept per base and seed, as in the paper (so both rows are "
        "selected on the evaluation items, alike). Columns without a task here are left out.", "",
        md(table[["row", "base", *shown, *[f"{c}_std" for c in shown if c != "overall"], "overall_std",
                  "best_epochs", "seeds"]]),
        f"**{CLAIM}**: {verdict.verdict} (WSM − WSD Overall {verdict.mean:+.2f} points over {verdict.seeds} "
        f"seed(s){ci}).", "",
        *paper,
        "Every epoch (epoch 0 = the base before SFT):", "",
        md(per_epoch[["row", "seed", "epoch", *shown]]),
    ]
