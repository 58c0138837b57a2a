"""``plan=true``: what a command would train, merge and evaluate, what is cached, and a rough time.

Reads the caches' existing layouts only (no hashing, no torch): a trained study is a
``series.json`` per branch under ``paths.studies/<study key>-s<seed>/``, a finished variant a
``jobs/<variant>@<suite>.json`` with ``ok`` rows in the sweep folder (whether its inputs changed
since is known only by hashing them: the run says so). Nothing is written.

Example:
    >>> rough_study_seconds(steps=2012, tokens_per_step=2048, parameters=164_352)
    185.1
"""

from __future__ import annotations

from pathlib import Path

from wsm_exp.sweep.check.preflight import CheckedJob
from wsm_exp.sweep.planning.variant_merge import needs_merge

# Measured on 2 CPU cores: the tiny study (164k parameters, 2048 tokens/step) trains at ~0.092 s per
# step; the small one (12.2M parameters, 4096 tokens/step) at ~2.8 s: cost ∝ tokens · parameters^0.63.
TINY_SECONDS_PER_STEP, TINY_TOKENS, TINY_PARAMETERS, PARAMETER_EXPONENT = 0.092, 2048, 164_352, 0.63
SECONDS_PER_DOC = 0.01  # lm-eval on the tiny model, CPU: ~2 s per task at 200 documents
UNLIMITED_DOCS = 5000  # a task without a limit: assume a full benchmark's size


def rough_study_seconds(*, steps: int, tokens_per_step: int, parameters: int) -> float:
    scale = (tokens_per_step / TINY_TOKENS) * (parameters / TINY_PARAMETERS) ** PARAMETER_EXPONENT
    return round(steps * TINY_SECONDS_PER_STEP * scale, 1)


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
    variants: dict[str, str] = {}
    for job in jobs:
        branches.setdefault(int(job.cfg.seed), set()).update(job.plan.branches)
        for variant in [job.plan.variant, *job.plan.baselines]:
            variants.setdefault(variant.name, _describe(variant))
    train_seconds = 0.0
    if jobs[0].source.trains_branches:  # the embedded study
        for seed, names in sorted(branches.items()):
            job = next(j for j in jobs if int(j.cfg.seed) == seed)
            cached, missing = _study_state(job.source, sorted(names))
            lines.append(f"  study seed {seed}: cached {', '.join(cached) or '-'}; "
                         f"to train: {', '.join(missing) or '-'}")
            steps = (job.source.branch_start if missing else 0) + job.source.branch_steps * len(missing)
            train_seconds += rough_study_seconds(
                steps=steps, tokens_per_step=job.source.tokens_per_step,
                parameters=parameters(job.source.model_cfg, job.source.data_cfg.vocab_size))
    else:
        lines.append(f"  series: {first.series.path} (your own run; nothing to train)")
    done = {name for name in variants if variant_done(sweep_dir, name, jobs[0].keys.suite)}
    todo = [name for name in variants if name not in done]
    lines.append(f"  variants: {len(variants)} ({len(done)} already in {sweep_dir / 'jobs'}, {len(todo)} to run)")
    for name, what in variants.items():
        lines.append(f"    {'done' if name in done else 'run '}  {name:<44} {what}")
    suite = first.eval
    docs = sum(min(int(suite.limits.get(t, suite.limit) or UNLIMITED_DOCS), UNLIMITED_DOCS) for t in suite.tasks)
    eval_seconds = len(todo) * docs * SECONDS_PER_DOC
    lines.append(f"  eval suite {suite.name!r}: {len(suite.tasks)} task(s), ~{docs} documents per model")
    lines.append(f"  rough time: ~{_minutes(train_seconds + eval_seconds)} (training ~{_minutes(train_seconds)}, "
                 f"evaluation ~{_minutes(eval_seconds)}; 2-CPU-core rates, cached scores and merges make it shorter)")
    lines.append(staged_cost_line(jobs, todo))
    lines.append("Nothing was written. Run the same command without plan=true to start.")
    return "\n".join(lines)


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
        return f"merge {variant.quantity} checkpoints of {variant.branch} (steps {first}..{last})"
    return f"{variant.kind} checkpoint of {variant.branch} at step {variant.end_step}"


def _study_state(source, names: list[str]) -> tuple[list[str], list[str]]:
    from wsm_exp.study import study_key

    root = Path(source.cache_root) / f"{study_key(source.model_cfg, source.data_cfg, source.train_cfg)}-s{source.seed}"
    cached = [n for n in names if (root / n / "series.json").is_file()]
    return cached, [n for n in names if n not in cached]


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
