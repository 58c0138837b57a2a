"""``plan=true``: what a command would train, merge and evaluate, what is cached, and its time.

Reads the caches' existing layouts only (no torch, no new hashing): a trained study is a
``series.json`` per branch under ``paths.studies/<study key>-s<seed>/``, a finished variant a
``jobs/<variant>@<suite>.json`` with ``ok`` rows in the sweep folder (whether its inputs changed
since is known only by hashing them: the run says so), and a model's scores are in the score cache
when its checkpoints' identities are already known to the identity cache. The time is calibrated
by the seconds earlier evaluations recorded (wsm_exp.sweep.check.estimate). Nothing is written.

Example:
    >>> from wsm_exp.sweep.check.preview import render   # render(checked jobs) -> the plan's text
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wsm_exp.evaluation.documents import documents, subtasks
from wsm_exp.timings import read as read_timings
from wsm_exp.sweep.check.estimate import (COMMAND_SECONDS, LOAD_SECONDS, STARTUP_SECONDS, STUDY_SETUP_SECONDS,
                                          study_seconds, task_seconds)
from wsm_exp.sweep.check.preflight import CheckedJob
from wsm_exp.sweep.planning.variant_merge import needs_merge, variant_plan


def parameters(model, vocab_size: int) -> int:
    """Llama parameters: attention 4h² + MLP 3·h·I per layer, plus the (tied) embedding."""
    h = model.hidden_size
    return model.num_hidden_layers * (4 * h * h + 3 * h * model.intermediate_size) + vocab_size * h


def variant_done(sweep_dir: Path, name: str, suite: str) -> bool:
    """True when the sweep folder has ``ok`` rows for the variant under this suite."""
    from wsm_exp.sweep.record.results import all_ok, read_job

    return all_ok(read_job(sweep_dir, name, suite))


def render(jobs: list[CheckedJob]) -> str:
    """The plan of a command's jobs as text."""
    first = jobs[0].cfg
    sweep_dir = Path(first.paths.sweep_dir)
    lines = [f"Plan for sweep {first.sweep_name!r}: {len(jobs)} job(s) -> {sweep_dir}"]
    branches: dict[int, set[str]] = {}  # seed -> study branches the jobs need
    variants: dict[str, tuple] = {}  # name -> (variant, its job)
    for job in jobs:
        branches.setdefault(int(job.cfg.seed), set()).update(job.plan.branches)
        for variant in [job.plan.variant, *job.plan.baselines]:
            variants.setdefault(variant.name, (variant, job))
    train_seconds, train_origin = 0.0, "prior"
    if jobs[0].source.trains_branches:  # the embedded study
        trained = read_timings(jobs[0].source.cache_root)
        for seed, names in sorted(branches.items()):
            job = next(j for j in jobs if int(j.cfg.seed) == seed)
            cached, missing = _study_state(job.source, sorted(names))
            lines.append(f"  study seed {seed}: cached {', '.join(cached) or '-'}; "
                         f"to train: {', '.join(missing) or '-'}")
            steps = (job.source.branch_start if missing else 0) + job.source.branch_steps * len(missing)
            seconds, train_origin = study_seconds(steps=steps, tokens_per_step=job.source.tokens_per_step,
                                                  parameters=model_parameters(job.source), past=trained)
            train_seconds += seconds + (STUDY_SETUP_SECONDS if missing and not train_seconds else 0.0)
    else:
        lines.append(f"  series: {first.series.path} (your own run; nothing to train)")
    suite, source = jobs[0].keys.suite, jobs[0].source
    heldout = _heldout_file(source)
    eval_cfg = jobs[0].cfg.eval
    size = model_parameters(source)
    past = read_timings(first.paths.scores)
    unbuilt = None if heldout or not source.trains_branches else int(source.data_cfg.heldout_docs)
    cost = {task: _task_cost(task, eval_cfg, size, heldout, past, unbuilt) for task in eval_cfg.tasks}
    done = {name for name in variants if variant_done(sweep_dir, name, suite)}
    summary, eval_seconds, scored = len(lines), 0.0, 0
    models: dict[tuple, str] = {}  # an unmerged checkpoint evaluated once: a second variant of it reuses the scores
    for name, (variant, job) in variants.items():
        if name in done:
            lines.append(f"    done    {name:<44} {_describe(variant)}: reused, costs nothing")
            continue
        same = None if needs_merge(variant) else models.setdefault((variant.branch, tuple(variant.steps)), name)
        if same not in (None, name):
            lines.append(f"    cached  {name:<44} {_describe(variant)}: the model of {same}, scored once; ~0 s")
            continue
        cached = set(_cached_scores(variant, job, heldout))
        todo = [t for t in eval_cfg.tasks if t not in cached]
        seconds = sum(cost[t][1] for t in todo) + (LOAD_SECONDS if todo else 0.0)
        eval_seconds += seconds
        scored += bool(todo)
        state = "run " if todo else "cached"
        note = (f"scores of {', '.join(sorted(cached))} in the score cache; " if cached and todo
                else "every score in the score cache; " if cached else "")
        lines.append(f"    {state:<6}  {name:<44} {_describe(variant)}: {note}~{_minutes(seconds)}")
    lines.insert(summary, f"  variants: {len(variants)} ({len(done)} already in {sweep_dir / 'jobs'}, "
                          f"{len(variants) - len(done) - scored} with every score cached, {scored} to evaluate)")
    docs = sum(c[0] for c in cost.values())
    measured = sum(c[2] == "measured" for c in cost.values())
    lines.append(f"  eval suite {eval_cfg.name!r}: {len(eval_cfg.tasks)} task(s), {docs} documents per model "
                 f"({', '.join(f'{t} {c[0]}' for t, c in cost.items())}); {size:,} parameters on {eval_cfg.device}")
    eval_seconds += STARTUP_SECONDS if scored else 0.0
    lines.append(f"  time per document: {measured} of {len(cost)} task(s) from {len(past)} past evaluation(s) "
                 f"in {Path(first.paths.scores) / 'timings.jsonl'}, the rest from the prior (docs/config.md)"
                 + (f"; training: {train_origin}" if train_seconds else ""))
    total = COMMAND_SECONDS + train_seconds + eval_seconds
    lines.append(f"  estimated time: ~{_minutes(total)} (start and report ~{_minutes(COMMAND_SECONDS)}, "
                 f"training ~{_minutes(train_seconds)}, evaluation of {scored} model(s) ~{_minutes(eval_seconds)})")
    lines.append(staged_cost_line(jobs, [name for name in variants if name not in done]))
    lines.append("Nothing was written. Run the same command without plan=true to start.")
    return "\n".join(lines)


def estimated_eval_seconds(text: str) -> float:
    """The evaluation seconds a rendered plan states (for comparing a plan with its run).

    >>> estimated_eval_seconds("  estimated time: ~2 min (training ~0 s, evaluation of 3 model(s) ~95 s)")
    95.0
    >>> estimated_eval_seconds("evaluation of 3 model(s) ~2 min)")
    120.0
    """
    import re

    value, unit = re.search(r"evaluation of \d+ model\(s\) ~([\d.]+) (s|min)", text).groups()
    return float(value) * (60 if unit == "min" else 1)


def _task_cost(task: str, eval_cfg, size: int, heldout: str | None, past,
               unbuilt: int | None) -> tuple[int, float, str]:
    """(documents, seconds, 'measured' or 'prior') of one task for one model; ``unbuilt``: the held-out
    articles the study will write (its file does not exist yet; each article is at least one document)."""
    limits = dict(eval_cfg.limits or {})
    limit = limits.get(task, eval_cfg.limit)
    if unbuilt is not None and task.endswith("heldout_bpb"):
        limit = unbuilt if limit is None else min(int(limit), unbuilt)
    docs = documents(task, None if limit is None else int(limit), heldout)
    docs = int(limit or 0) if docs is None else docs
    seconds, origin = task_seconds(task, docs, size, str(eval_cfg.device), past, subtasks=len(subtasks(task)))
    return docs, seconds, origin


def model_parameters(source) -> int:
    """Parameters of the models the sweep evaluates: the study's config, or the user's last checkpoint."""
    if source.trains_branches:
        return parameters(source.model_cfg, source.data_cfg.vocab_size)
    last = source.series_of("wsm").checkpoints[-1]
    files = [f for f in last.files if str(f).endswith(".safetensors")]
    if files:
        return sum(_safetensors_parameters(f) for f in files)
    config = Path(source.hf_config or last.path) / "config.json"
    cfg = json.loads(config.read_text())
    h, inner = cfg["hidden_size"], cfg.get("intermediate_size", 4 * cfg["hidden_size"])
    return cfg["num_hidden_layers"] * (4 * h * h + 3 * h * inner) + cfg["vocab_size"] * h


def _safetensors_parameters(path: Path) -> int:
    """Elements of every tensor in a safetensors file, from its header alone."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for dim in entry["shape"]:
                count *= dim
            total += count
    return total


def _cached_scores(variant, job, heldout: str | None) -> list[str]:
    """Tasks whose scores for this variant's model are in the score cache, where knowable without hashing."""
    from wsm_exp.evaluation.harness import cached_tasks
    from wsm_exp.evaluation.suites import SuiteConfig
    from wsm_exp.merging.plan import build_plan
    from wsm_exp.sweep.spec.schemas import from_node

    source = job.source
    if source.hf_config is not None:
        return []  # DCP: the model hash joins the converted folder's config digest (known only by converting)
    try:
        series = _branch_series(source, variant.branch)
        by_step = {c.step: c for c in series.checkpoints}
        checkpoints = [by_step[s] for s in variant.steps]
    except (KeyError, OSError, ValueError):
        return []  # not trained yet, or the window is not there: nothing is cached
    if needs_merge(variant):
        model_hash = variant_plan(variant, checkpoints, source.tokens_per_step, identify=False).key
    else:
        model_hash = build_plan(checkpoints[:1], identify=False).identities[0]
    if model_hash is None:
        return []
    suite = from_node(SuiteConfig, job.cfg.eval, key="eval")
    return cached_tasks(model_hash, suite, job.cfg.paths.scores, Path(heldout) if heldout else None)


def _branch_series(source, branch: str):
    from wsm_exp.merging.series import load_series

    if not source.trains_branches:
        return source.series_of(branch)
    return load_series(_study_root(source) / branch, tokens_per_step=source.tokens_per_step)


def _heldout_file(source) -> str | None:
    """The held-out text the loss task reads, where it exists already (a plan builds no study data)."""
    if source.trains_branches:
        from wsm_exp.study.data import data_key

        path = Path(source.cache_root) / "data" / data_key(source.data_cfg) / "heldout.jsonl"
    else:
        path = source.heldout()
    return str(path) if path and Path(path).is_file() else None


def variant_done(sweep_dir: Path, name: str, suite: str) -> bool:
    """True when the sweep folder has ``ok`` rows for the variant under this suite."""
    from wsm_exp.sweep.record.results import all_ok, read_job

    return all_ok(read_job(sweep_dir, name, suite))
UNLIMITED_DOCS = 5000  # a task without a limit: counted as a full benchmark's size in the cost line


def staged_cost_line(jobs: list[CheckedJob], todo: list[str]) -> str:
    """Evaluation cost unstaged vs ``eval.staged=true`` in documents scored, for the variants still to run.

    Staged: every merge variant's screen (held-out bpb, reused by the full suite, or each task at
    ``eval.screen_limit``), the full suite for the baselines and for the variants the screen keeps:
    at least the best one, at most all."""
    suite = jobs[0].cfg.eval
    def docs(limit_of) -> int:
        return sum(min(int(limit_of(t) or UNLIMITED_DOCS), UNLIMITED_DOCS) for t in suite.tasks)
    full = docs(lambda t: suite.limits.get(t, suite.limit))
    has_file = jobs[0].source.trains_branches or bool(jobs[0].cfg.series.get("heldout"))  # no I/O: plan=true
    heldout = "wsm_heldout_bpb" in suite.tasks and has_file
    screen = (min(int(suite.limits.get("wsm_heldout_bpb", suite.limit) or UNLIMITED_DOCS), UNLIMITED_DOCS)
              if heldout else docs(lambda t: suite.get("screen_limit", 50)))
    baselines = {b.name for job in jobs for b in job.plan.baselines} & set(todo)
    candidates = [n for n in dict.fromkeys(job.plan.variant.name for job in jobs) if n in todo and n not in baselines]
    rest = full - screen if heldout else full  # a held-out screen is the full suite's own first task
    low = len(candidates) * screen + len(baselines) * full + min(1, len(candidates)) * rest
    high = len(candidates) * (screen + rest) + len(baselines) * full
    return (f"  evaluation cost (documents scored): unstaged {len(todo) * full}; eval.staged=true "
            f"{low}..{high} (screen {screen} per variant on {'held-out bpb' if heldout else 'every task'}, full "
            f"{full} for {len(baselines)} baseline(s) and the variants the screen keeps, at least the best)")


def _describe(variant) -> str:
    if needs_merge(variant):
        first, last = variant.steps[0], variant.steps[-1]
        fitted = " with weights fitted on the held-out fit split" if variant.curve == "fitted" else ""
        return f"merge {variant.quantity} checkpoints of {variant.branch} (steps {first}..{last}){fitted}"
    return f"{variant.kind} checkpoint of {variant.branch} at step {variant.end_step}"


def _study_root(source) -> Path:
    from wsm_exp.study import study_key

    return Path(source.cache_root) / f"{study_key(source.model_cfg, source.data_cfg, source.train_cfg)}-s{source.seed}"


def _study_state(source, names: list[str]) -> tuple[list[str], list[str]]:
    root = _study_root(source)
    cached = [n for n in names if (root / n / "series.json").is_file()]
    return cached, [n for n in names if n not in cached]


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 300 else f"{seconds / 60:.0f} min"
