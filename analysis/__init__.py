"""Reports over sweep folders: the WSM paper's tables and figures, side by side with the paper.

Example:
    >>> from analysis import load_results, write_report     # doctest: +SKIP
    >>> write_report(["sweeps/duration", "sweeps/duration-s1"]).path   # doctest: +SKIP
"""

from analysis.factors import factor_importance
from analysis.findings import findings
from analysis.load import ReportError, load_results, model_scores
from analysis.tables import loss_table, table1, table3, table4, table5

_REPORT = ("Report", "log_report_to_wandb", "write_report")  # lazy: `python -m analysis.report` runs that module


def __getattr__(name: str):
    if name in _REPORT:
        from analysis import report

        return getattr(report, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


__all__ = ["Report", "ReportError", "factor_importance", "findings", "load_results", "log_report_to_wandb",
           "loss_table", "model_scores", "table1", "table3", "table4", "table5", "write_report"]
