"""The paper's printed tables as the report shows them, each with a one-line legend of its columns.

The numbers are ``analysis/paper_data/<name>.csv`` (provenance in its README); what each column means
is ``paper_data/columns.csv`` (a ``*`` row serves every table). A column without a meaning is an error,
so no "Paper:" column is ever shown unexplained. Table 5 is shown as loss beside Overall (the paper's
Table 1 score of the same two models); its MoE load-balance columns have no counterpart in a dense
model and are named in the note instead.

Example:
    >>> paper_view("table5").columns.tolist()
    ['row', 'test_lm_loss', 'overall']
    >>> legend("table4").startswith("Paper columns: interval_tokens = checkpoint interval Δ in tokens;")
    True
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

PAPER = Path(__file__).with_name("paper_data")
NOTES = {"table4": "the Language column is internally inconsistent as printed (~80 vs ~68 elsewhere)",
         "table5": "the paper's Table 5 also prints mean max / mean min violation, the MoE router's expert "
                   "load balance of its 256-expert model; our models are dense, so those columns have no "
                   "counterpart here and are not shown"}


def paper_table(name: str) -> pd.DataFrame:
    """The paper's printed numbers (analysis/paper_data/<name>.csv)."""
    return pd.read_csv(PAPER / f"{name}.csv")


def paper_view(name: str) -> pd.DataFrame:
    """The paper's table as the report shows it (Table 5: loss beside the same models' Table 1 Overall)."""
    if name == "table5":
        return paper_table("table5")[["row", "test_lm_loss"]].merge(paper_table("table1")[["row", "overall"]], on="row")
    return paper_table(name)


@cache
def _meanings() -> pd.DataFrame:
    return pd.read_csv(PAPER / "columns.csv")


def meaning(name: str, column: str) -> str:
    """What a column of the paper's table ``name`` means; ValueError when columns.csv does not say."""
    rows = _meanings()
    found = rows[(rows["column"] == column) & rows["table"].isin([name, "*"])].sort_values("table", ascending=False)
    if found.empty:
        raise ValueError(f"analysis/paper_data/columns.csv has no meaning for column {column!r} of {name}.csv: "
                         "add a row 'table,column,meaning' so the report can explain it.")
    return str(found["meaning"].iloc[0])  # the table's own row before the "*" row


def legend(name: str) -> str:
    """One line: every shown column of the paper's table ``name`` and what it means (plus the table's note)."""
    parts = "; ".join(f"{c} = {meaning(name, c)}" for c in paper_view(name).columns)
    note = f" Note: {NOTES[name]}." if name in NOTES else ""
    return f"Paper columns: {parts}.{note}"


def paper_section(name: str, md, places: int = 2) -> list[str]:
    """The report's lines for the paper's table ``name``: a heading, the table (``md`` renders it) and its legend."""
    return ["Paper:", "", md(paper_view(name), places), legend(name), ""]
