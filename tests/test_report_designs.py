"""Reports fitted to each sweep: every sweep in conf/sweep × a suite with held-out text and one without
(whose scores are all ≤ 0), from the variants the real sweep plans (Hydra composes each sweep; nothing
trains), with seeded synthetic scores.

Each report must be written (never crash: suites without held-out text, all-zero and negative scores),
show exactly the parts its design supports, give a one-line reason for every part it leaves out, and put
the design's axes in every table.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pandas as pd
import pytest
from hydra import initialize_config_dir

from analysis.design import TITLES, design_of
from analysis.report import write_report
from analysis.tables import AXIS_COLUMNS
from wsm_exp import __main__ as entry
from wsm_exp.sweep.check import preflight
from wsm_exp.sweep.planning import compose
from wsm_exp.sweep.record import results

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.stem for p in (ROOT / "conf" / "sweep").glob("*.yaml"))
SUITES = {  # name -> ({task: (category, metric)}, score of a model in [0, 1] given its hash draw)
    "tiny": ({"wsm_heldout_bpb": ("heldout", "bits_per_byte"), "t_lang": ("language", "acc"),
              "t_math": ("math", "acc")}, lambda u: 0.2 + 0.4 * u),
    "zero_or_negative": ({"t_gk": ("general_knowledge", "acc"), "t_prof": ("professional_knowledge", "acc")},
                         lambda u: 0.0 if u < 0.7 else -0.5),
}
HEADINGS = {"table1": "## Table 1", "pairs": "## Decay shapes beside their merge curves", "table3": "## Table 3",
            "table4": "## Table 4", "table5": "## Table 5", "factors": "## Factor importance",
            "duration": "## Score vs merge ", "losses": "## Losses by category"}
EXPECTED = {  # sweep: (parts its question needs, parts it must not show), on any suite with held-out text
    "duration": ({"duration", "table1"}, {"table3", "table4", "factors", "pairs"}),
    "quantity": ({"duration"}, {"table4", "factors", "table3"}),  # D varies with N at fixed Δ: no fixed-D table
    "interval": ({"table4"}, {"duration", "table3"}),
    "method": ({"table3"}, {"table4", "duration", "factors"}),
    "grid": ({"factors", "table4", "duration"}, {"table3"}),
    "wsd_vs_wsm": ({"pairs", "table3", "table1"}, {"duration", "table4", "factors"}),
    "noise": (set(), {"table1", "table3", "duration"}),  # merges of many probe branches: the beyond section
}
FAST = {("duration", "tiny")}  # the fast loop's sample; every other sweep × suite runs in the full suite


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """Every sweep's variants (merges and baselines) for seeds 0 and 1, as the real planner decides them;
    composed on first use (the noise sweep alone is 36 jobs)."""
    folder = tmp_path_factory.mktemp("plans")
    cache: dict[str, list] = {}

    def variants(sweep: str) -> list:
        if sweep not in cache:
            with initialize_config_dir(config_dir=str(entry.CONF), version_base="1.3"):
                _, overrides, configs = compose.compose_command([f"paths.sweeps={folder}", f"+sweep={sweep}",
                                                                   "seed=0,1"])
                jobs = preflight.check_jobs(overrides, configs)
            by_name = {}
            for job in jobs:
                for variant in (job.plan.variant, *job.plan.baselines):
                    by_name[variant.name] = variant
            cache[sweep] = list(by_name.values())
        return cache[sweep]

    return variants


def _draw(name: str, task: str) -> float:
    return zlib.crc32(f"{name}/{task}".encode()) / 2 ** 32


def _rows(sweep: str, variant, suite: str) -> list[dict]:
    tasks, score = SUITES[suite]
    fields = variant.row_fields(tokens_per_step=2048, branch_start=1500, branch_steps=256)
    if sweep == "sft":  # the SFT job path writes fine-tuned rows per epoch (wsm_exp/sweep/run/sft_job.py)
        role = "wsd" if variant.kind == "wsd" else "wsm"
        return [results.make_row(sweep=sweep, **{**fields, "variant": f"sft-{role}-e{epoch}-s{variant.seed}",
                                                 "kind": "sft", "branch": f"sft_{role}", "branch_kind": "sft"},
                                 epoch=epoch, task=task, category=category, metric=metric,
                                 value=score(_draw(f"{variant.name}{epoch}", task)))
                for epoch in (0, 1, 2) for task, (category, metric) in tasks.items() if metric != "bits_per_byte"]
    return [results.make_row(sweep=sweep, **fields, task=task, category=category, metric=metric,
                             higher_is_better=metric != "bits_per_byte",
                             value=2.2 + 0.2 * _draw(variant.name, task) if metric == "bits_per_byte"
                             else score(_draw(variant.name, task)))
            for task, (category, metric) in tasks.items()]


def _write(folder: Path, sweep: str, variants: list, suite: str) -> Path:
    for variant in variants:
        if sweep == "sft" and variant.kind not in ("wsm", "wsd"):
            continue
        results.write_job(folder, variant.name, "fp", _rows(sweep, variant, suite))
    results.write_results(folder)
    return folder


INTERVAL_FIGURES = {"fidelity": "fidelity.png", "extrapolate": "beyond_extrapolate.png",
                    "controls": "beyond_controls.png", "long_decay": "beyond_long_decay.png"}


def _assert_bars(figure: Path) -> None:
    """Every point compared has its interval over both seeds, a bar that holds it, and a y-axis that shows the bar."""
    import json

    from PIL import Image

    points = pd.read_csv(figure.with_suffix(".csv"))
    tested = points[points["ci_low"].notna()]
    assert len(tested) and (tested["seeds"] == 2).all() and tested["noise"].str.contains("2 seeds").all(), points
    assert ((tested["bar_low"] <= tested["value"]) & (tested["value"] <= tested["bar_high"])).all()
    assert points.loc[points["ci_low"].isna(), "noise"].str.startswith("none (").all()  # the reference, or said why
    (panel,) = json.loads(Image.open(figure).text["Description"])
    assert panel["ylim"][0] <= tested["bar_low"].min() and panel["ylim"][1] >= tested["bar_high"].max()


CASES = [pytest.param(sweep, suite, marks=[] if (sweep, suite) in FAST else [pytest.mark.slow])
         for sweep in SWEEPS for suite in SUITES]


@pytest.mark.parametrize(("sweep", "suite"), CASES)
def test_every_sweep_and_suite_gets_a_report_fitted_to_its_design(planned, tmp_path, sweep, suite):
    report = write_report([_write(tmp_path, sweep, planned(sweep), suite)])
    text = report.path.read_text()
    design = design_of(report.tables["models"])
    assert f"**Design.** {design.describe()}" in text
    for part, heading in HEADINGS.items():
        reason = design.parts[part]
        assert (heading in text) == (reason is None), (part, reason)
        if reason:  # one line per reason, naming every part it leaves out
            assert any(line.startswith("- ") and TITLES[part] in line and line.endswith(f": {reason}")
                       for line in text.splitlines()), (part, reason)
    for name in ("table1", "table3", "table5", "pairs", "duration"):
        if design.parts[name] is None:
            table = pd.read_csv(tmp_path / "tables" / f"{name}.csv")
            assert {"duration_steps", "quantity"} <= set(table.columns), name
    if sweep == "sft":
        assert "## Table 2" in text
    if suite == "tiny" and sweep in INTERVAL_FIGURES:  # the figure's data carry their intervals (2 seeds)
        _assert_bars(tmp_path / "figures" / INTERVAL_FIGURES[sweep])
    if sweep in EXPECTED and suite == "tiny":
        shown, hidden = EXPECTED[sweep]
        parts = {name for name, reason in design.parts.items() if reason is None}
        assert shown <= parts and not hidden & parts, parts


@pytest.mark.slow
def test_wsd_vs_wsm_pairs_each_shape_with_its_curve(planned, tmp_path):
    write_report([_write(tmp_path, "wsd_vs_wsm", planned("wsd_vs_wsm"), "tiny")])
    pairs = pd.read_csv(tmp_path / "tables" / "pairs.csv")
    assert dict(zip(pairs["shape"], pairs["merge_curve"])) == {"1-sqrt": "1-sqrt", "cosine": "cosine", "linear": "mean"}
    assert (pairs["duration_steps"] == 256).all() and (pairs["seeds"] == 2).all()
    assert (tmp_path / "figures" / "decay_pairs_loss.png").stat().st_size > 5_000
    bars = pd.read_csv(tmp_path / "figures" / "decay_pairs_loss.csv")  # merge − decay over the 2 seeds
    assert bars["ci_low"].notna().all() and bars["noise"].str.startswith("training seeds + evaluation (2 seeds").all()
    assert ((bars["bar_low"] <= bars["merge_heldout_bpb"]) & (bars["merge_heldout_bpb"] <= bars["bar_high"])).all()
    assert set(AXIS_COLUMNS) <= set(pd.read_csv(tmp_path / "tables" / "table3.csv").columns)


@pytest.mark.slow
def test_a_combined_report_compares_curves_at_one_window_and_says_which(planned, tmp_path):
    """duration (mean at D = 32, 64, 128, N = 4) + method (six curves at D = 64, N = 8): Table 3 compares the
    curves where they share a window, never the mean's best window against the others'."""
    folders = [_write(tmp_path / name, name, planned(name), "tiny") for name in ("duration", "method")]
    report = write_report(folders, tmp_path / "both")
    merges = report.tables["table3"][report.tables["table3"]["row"].str.startswith("merge_")]
    assert len(merges) == 6 and merges[["duration_steps", "interval_steps", "quantity"]].drop_duplicates().shape[0] == 1
    assert "Merges at one window: D = 64, Δ = 8, N = 8, end = 1756." in report.path.read_text()


AXIS_FIGURES = {  # sweep: (figure prefix, x label, what the legend must name, figure prefixes it must not draw)
    "quantity": ("quantity", "merge quantity N (checkpoints)", "D = ", ("duration", "interval")),
    "interval": ("interval", "checkpoint interval Δ (steps)", "D = 64", ("duration", "quantity")),
    "duration": ("duration", "merge duration D (steps)", "WSD 1-sqrt decay", ("quantity", "interval")),
}


@pytest.mark.slow
@pytest.mark.parametrize("sweep", sorted(AXIS_FIGURES))
def test_each_sweep_is_drawn_against_its_own_axis_with_d_in_the_legend(planned, tmp_path, sweep):
    """The quantity sweep by N, the interval sweep by Δ (D in the legend), the duration sweep by D; the bars are
    the 2-seed intervals of each merge against the best decay, in the CSV beside the figure."""
    import json

    from PIL import Image

    prefix, xlabel, named, absent = AXIS_FIGURES[sweep]
    report = write_report([_write(tmp_path, sweep, planned(sweep), "tiny")])
    folder = tmp_path / "figures"
    for kind in ("score", "loss"):
        (panel,) = json.loads(Image.open(folder / f"{prefix}_{kind}.png").text["Description"])
        assert panel["xlabel"] == xlabel and any(named in entry for entry in panel["legend"]), panel
        points = pd.read_csv(folder / f"{prefix}_{kind}.csv")
        assert points["ci_low"].notna().all() and (points["seeds"] == 2).all()
        assert panel["ylim"][0] <= points["bar_low"].min() and panel["ylim"][1] >= points["bar_high"].max()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(absent)]
    if sweep == "quantity":
        assert "## Score vs merge quantity N" in report.path.read_text()
