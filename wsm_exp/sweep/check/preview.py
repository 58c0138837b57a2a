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

from wsm_exp.sweep.check.estimate import fixed_seconds, model_seconds, study_seconds, usable
from wsm_exp.sweep.check.machine_now import describe, measure
from wsm_exp.sweep.check.plan_cost import staged_cost_line, suite_documents, task_costs
from wsm_exp.timings import TRAIN_TASK
from wsm_exp.timings import read as read_timings
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
    first, source = jobs[0].cfg, jobs[0].source
    sweep_dir, eval_cfg, suite = Path(first.paths.sweep_dir), first.eval, jobs[0].keys.suite
    lines = [f"Plan for sweep {first.sweep_name!r}: {len(jobs)} job(s) -> {sweep_dir}"]
    branches: dict[int, set[str]] = {}  # seed -> study branches the jobs need
    variants: dict[str, tuple] = {}  # name -> (variant, its job)
    for job in jobs:
        branches.setdefault(int(job.cfg.seed), set()).update(job.plan.branches)
        for variant in [job.plan.variant, *job.plan.baselines]:
            variants.setdefault(variant.name, (variant, job))
    size, heldout = model_parameters(source), _heldout_file(source)
    training = _training(jobs, branches, lines) if source.trains_branches else []
    if not source.trains_branches:
        lines.append(f"  series: {first.series.path} (your own run; nothing to train)")
    done = {name for name in variants if variant_done(sweep_dir, name, suite)}
    states = _variant_states(variants, done, eval_cfg, heldout)
    past = read_timings(first.paths.scores)
    trained = read_timings(source.cache_root) if training else []
    device = str(eval_cfg.device)
    cold_eval = any(isinstance(todo, list) and todo for todo in states.values()) and any(
        not usable(past, t, device, size) for t in eval_cfg.tasks)
    cold_train = bool(training) and not usable([t for t in trained if t.tokens > 0], TRAIN_TASK,
                                               str(source.train_cfg.device), size)
    probe = bool(first.get("plan_probe", True))
    machine, why_not = measure(source, eval_cfg, probe_eval=probe and cold_eval, probe_train=probe and cold_train)
    why_not = why_not or (None if probe or not (cold_eval or cold_train) else "plan_probe=false")
    unbuilt = None if heldout or not source.trains_branches else int(source.data_cfg.heldout_docs)
    counts = suite_documents(eval_cfg, heldout=heldout, unbuilt=unbuilt)
    cost = task_costs(eval_cfg, counts, parameters=size, heldout=heldout, past=past, machine=machine)
    train_seconds, train_origin = 0.0, "prior"
    for steps, saves, segments in training:
        seconds, train_origin = study_seconds(steps=steps, saves=saves, segments=segments, parameters=size,
                                              tokens_per_step=source.tokens_per_step, past=trained,
                                              device=str(source.train_cfg.device), machine=machine)
        train_seconds += seconds
    summary, eval_seconds, scored = len(lines), 0.0, 0
    for name, (variant, _) in variants.items():
        todo = states[name]
        if isinstance(todo, str):
            lines.append(todo)
            continue
        seconds = sum(cost[t][0] for t in todo) + (
            model_seconds(parameters=size, merged=len(variant.steps) if needs_merge(variant) else 1, machine=machine)
            if todo else 0.0)
        eval_seconds += seconds
        scored += bool(todo)
        cached = [t for t in eval_cfg.tasks if t not in todo]
        note = (f"scores of {', '.join(sorted(cached))} in the score cache; " if cached and todo
                else "every score in the score cache; " if cached else "")
        lines.append(f"    {'run ' if todo else 'cached':<6}  {name:<44} {_describe(variant)}: {note}~{_minutes(seconds)}")
    lines.insert(summary, f"  variants: {len(variants)} ({len(done)} already in {sweep_dir / 'jobs'}, "
                          f"{len(variants) - len(done) - scored} with every score cached, {scored} to evaluate)")
    shown = ", ".join(f"{t} {'?' if c is None else c}" for t, c in counts.items())
    lines.append(f"  eval suite {eval_cfg.name!r}: {len(eval_cfg.tasks)} task(s), {sum(c or 0 for c in counts.values())} "
                 f"documents per model ({shown}); {size:,} parameters on {device}")
    measured = sum(c[1] == "measured" for c in cost.values())
    lines.append(f"  time per document: {measured} of {len(cost)} task(s) from {len(past)} past evaluation(s) "
                 f"in {Path(first.paths.scores) / 'timings.jsonl'}, the rest from the prior (docs/config.md)"
                 + (f"; training: {train_origin}" if train_seconds else ""))
    lines.append(f"  measured now: {describe(machine, why_not)}")
    start, first_model = fixed_seconds(evaluates=bool(scored), trains=bool(training), machine=machine)
    eval_seconds += first_model
    lines.append(f"  estimated time: ~{_minutes(start + train_seconds + eval_seconds)} (start and report "
                 f"~{_minutes(start)}, training ~{_minutes(train_seconds)}, evaluation of {scored} model(s) "
                 f"~{_minutes(eval_seconds)})")
    lines.append(_staged(jobs, eval_cfg, counts, heldout, unbuilt, [n for n in variants if n not in done]))
    lines.append("Nothing was written. Run the same command without plan=true to start.")
    return "\n".join(lines)


def _training(jobs, branches: dict[int, set[str]], lines: list[str]) -> list[tuple[int, int, int]]:
    """(steps, checkpoints saved, segments) per seed with branches to train; ``lines`` get each seed's cached
    and missing branches."""
    out = []
    for seed, names in sorted(branches.items()):
        source = next(j for j in jobs if int(j.cfg.seed) == seed).source
        cached, missing = _study_state(source, sorted(names))
        lines.append(f"  study seed {seed}: cached {', '.join(cached) or '-'}; to train: {', '.join(missing) or '-'}")
        if missing:
            train = source.train_cfg
            stage1 = 0 if _study_state(source, ["stage1"])[0] else source.branch_start
            saves = (stage1 // max(int(train.save_every), stage1 // 4, 1) if stage1 else 0) + len(missing) * (
                -(-source.branch_steps // int(train.save_every)))
            out.append((stage1 + source.branch_steps * len(missing), saves, len(missing) + bool(stage1)))
    return out


def _variant_states(variants: dict, done: set[str], eval_cfg, heldout: str | None) -> dict:
    """Per variant: its plan line when it costs nothing (done, or the model of another variant), else the tasks to run."""
    states: dict = {}
    models: dict[tuple, str] = {}  # an unmerged checkpoint evaluated once: a second variant of it reuses the scores
    for name, (variant, job) in variants.items():
        if name in done:
            states[name] = f"    done    {name:<44} {_describe(variant)}: reused, costs nothing"
            continue
        same = None if needs_merge(variant) else models.setdefault((variant.branch, tuple(variant.steps)), name)
        if same not in (None, name):
            states[name] = f"    cached  {name:<44} {_describe(variant)}: the model of {same}, scored once; ~0 s"
            continue
        cached = set(_cached_scores(variant, job, heldout))
        states[name] = [t for t in eval_cfg.tasks if t not in cached]
    return states


def _staged(jobs, eval_cfg, counts: dict, heldout, unbuilt, todo: list[str]) -> str:
    """The staged-evaluation line, from the same document counts as the time."""
    has_file = jobs[0].source.trains_branches or bool(jobs[0].cfg.series.get("heldout"))  # no I/O: plan=true
    heldout_screen = "wsm_heldout_bpb" in eval_cfg.tasks and has_file
    screen = {} if heldout_screen else suite_documents(eval_cfg, heldout=heldout, unbuilt=unbuilt,
                                                        limit=int(eval_cfg.get("screen_limit", 50)))
    baselines = {b.name for job in jobs for b in job.plan.baselines} & set(todo)
    candidates = [n for n in dict.fromkeys(job.plan.variant.name for job in jobs) if n in todo and n not in baselines]
    return staged_cost_line(counts, screen, heldout_screen=heldout_screen, baselines=len(baselines),
                            candidates=len(candidates), todo=len(todo))


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
