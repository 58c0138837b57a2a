"""lm-evaluation-harness adapter with a content-keyed score cache.

A score is keyed by model content hash + task definitions hash + harness version + limit, seed
and few-shot settings (+ the held-out file's content for the loss task). The per-document values
behind the scores (wsm_exp.evaluation.samples) are cached in the same file, under the same key.
A rerun evaluates only what is missing; each task actually run appends its seconds to the
calibration store (wsm_exp.timings) that ``plan=true`` estimates from. lm-eval's own
response cache is never used, so nothing is
shared across models.

Example:
    >>> from wsm_exp.evaluation import SuiteConfig, evaluate_model                    # doctest: +SKIP
    >>> suite = SuiteConfig(tasks=["wsm_piqa"], limit=50)                              # doctest: +SKIP
    >>> [s.value for s in evaluate_model("merged/mean4", suite, cache_dir="scores")]  # doctest: +SKIP
    >>> evaluate("merged/mean4", suite, cache_dir="scores").samples.columns.tolist()  # doctest: +SKIP
    ['task', 'doc_id', 'metric', 'value', 'weight']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from wsm_exp.atomic import file_lock, write_json_atomic
from wsm_exp.evaluation.in_memory import ModelInMemory, build_model
from wsm_exp.evaluation.samples import sample_rows, to_frame
from wsm_exp.evaluation.suites import TASK_DIR, SuiteConfig
from wsm_exp.timings import Timing, record_timing
from wsm_exp.keys import content_key, package_versions

log = logging.getLogger(__name__)
SAMPLES_CODE = Path(__file__).with_name("samples.py")  # per-document extraction: part of the task fingerprint


@dataclass(frozen=True)
class Score:
    """One metric of one task for one model."""

    task: str
    category: str
    metric: str  # acc, acc_norm, bits_per_byte, perplexity, ...
    value: float
    stderr: float  # NaN where the harness gives none
    higher_is_better: bool
    n_samples: int
    task_version: str
    task_hash: str  # hash of the project's task definitions (or lm-eval's version for built-ins)
    harness_version: str
    seconds: float
    from_cache: bool = False
    tokens: int = 0  # tokens the model read for this task (throughput.CountingLM); 0 in entries cached before
    tokens_per_second: float = math.nan  # tokens / seconds of the task's run


@dataclass(frozen=True)
class Evaluation:
    """A model's scores and the per-document values behind them (columns of samples.COLUMNS)."""

    scores: list[Score]
    samples: pd.DataFrame


LOWER_IS_BETTER = {"bits_per_byte", "byte_perplexity", "word_perplexity", "perplexity"}
BINARY = {"acc", "acc_norm", "exact_match"}


def binary_stderr(mean: float, n: int) -> float:
    """Standard error of a mean of 0/1 outcomes (lm-eval's mean_stderr for binary data).

    >>> round(binary_stderr(0.5, 101), 4)
    0.05
    """
    return math.sqrt(mean * (1 - mean) / (n - 1)) if n > 1 else math.nan


def harness_version() -> str:
    import lm_eval

    return getattr(lm_eval, "__version__", "unknown")


@lru_cache(maxsize=1)
def tasks_fingerprint() -> str:
    """Hash of every task definition file shipped with the package and of the per-document extraction
    code (evaluation/samples.py: the values paired tests read are cached under the same key)."""
    digest = hashlib.sha256()
    for path in sorted(TASK_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".yaml", ".py", ""} and "__pycache__" not in path.parts:
            digest.update(path.relative_to(TASK_DIR).as_posix().encode() + path.read_bytes())
    digest.update(b"samples.py" + SAMPLES_CODE.read_bytes())
    return digest.hexdigest()[:16]


def model_identity(model_dir: Path) -> str:
    """Content hash of a Hugging Face model folder's weights and config (cached; see docs/merging.md)."""
    from wsm_exp.merging.identity import folder_identity

    return folder_identity(model_dir)


@lru_cache(maxsize=4)
def task_manager(builtin: bool, metadata_json: str):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASK_DIR), include_defaults=builtin, metadata=json.loads(metadata_json))


def evaluate_model(model_dir: str | Path | ModelInMemory, suite: SuiteConfig, *, cache_dir: str | Path | None,
                   extra_data: dict[str, Path] | None = None, model_hash: str | None = None) -> list[Score]:
    """Scores of ``model_dir`` on every task of ``suite``, from the cache where possible."""
    return evaluate(model_dir, suite, cache_dir=cache_dir, extra_data=extra_data, model_hash=model_hash).scores


def evaluate(model_dir: str | Path | ModelInMemory, suite: SuiteConfig, *, cache_dir: str | Path | None,
             extra_data: dict[str, Path] | None = None, model_hash: str | None = None) -> Evaluation:
    """Scores and per-document values of ``model_dir`` on every task of ``suite`` (cached together).

    ``model_dir`` is a Hugging Face folder, or a ``ModelInMemory`` (e.g. a merge never written:
    ``in_memory.from_merge``), whose identity keys the cache unless ``model_hash`` is given."""
    if isinstance(model_dir, ModelInMemory):
        model_hash = model_hash or model_dir.identity
    else:
        model_dir = Path(model_dir)
        model_hash = model_hash or model_identity(model_dir)
    metadata = {}
    data_identity = ""
    if extra_data and extra_data.get("heldout"):
        metadata["heldout_path"] = str(extra_data["heldout"])
        data_identity = hashlib.sha256(Path(extra_data["heldout"]).read_bytes()).hexdigest()[:16]
    scores: list[Score] = []
    samples: list[dict] = []
    todo: list[tuple[str, Path | None]] = []
    for task in suite.tasks:
        path = _cache_path(cache_dir, model_hash, task, suite, data_identity)
        cached = _read_cache(path)
        if cached is not None:
            # categories are the suite's, not the cache's: editing eval.categories needs no re-evaluation
            scores += [Score(**{**row, "category": suite.category_of(task), "from_cache": True})
                       for row in cached["scores"]]
            samples += cached["samples"]
        else:
            todo.append((task, path))
    if todo:
        _check_code_execution([task for task, _ in todo], suite)
        with _model_lock(cache_dir, model_hash):  # another process evaluating this model: wait, then reuse
            lm = None
            for task, path in todo:
                cached = _read_cache(path)
                if cached is not None:
                    fresh = [Score(**{**row, "category": suite.category_of(task), "from_cache": True})
                             for row in cached["scores"]]
                    rows = cached["samples"]
                else:
                    if lm is None:
                        lm = _load_model(model_dir, suite)
                    manager = task_manager(suite.builtin, json.dumps(metadata, sort_keys=True))
                    fresh, rows = _run_task(lm, manager, task, suite)
                    record_timing(cache_dir, Timing(task=task, documents=fresh[0].n_samples, seconds=fresh[0].seconds,
                                                     parameters=_parameters(lm), device=suite.device))
                    if path is not None:
                        write_json_atomic(path, {"scores": [asdict(s) for s in fresh], "samples": rows})
                scores += fresh
                samples += rows
    return Evaluation(scores, to_frame(samples))


def cached_tasks(model_hash: str, suite: SuiteConfig, cache_dir: str | Path, heldout: Path | None = None) -> list[str]:
    """The tasks of ``suite`` whose scores for ``model_hash`` are in the score cache (nothing is evaluated)."""
    data_identity = hashlib.sha256(Path(heldout).read_bytes()).hexdigest()[:16] if heldout else ""
    return [task for task in suite.tasks
            if _read_cache(_cache_path(cache_dir, model_hash, task, suite, data_identity)) is not None]


@contextlib.contextmanager
def _model_lock(cache_dir, model_hash: str):
    """Exclusive lock per evaluated model in the score cache (no lock without a cache)."""
    if cache_dir is None:
        yield
        return
    with file_lock(Path(cache_dir) / model_hash[:2] / f".{model_hash}.lock"):
        yield


def _read_cache(path: Path | None) -> dict | None:
    """A cache entry with scores and samples; None when absent or written before samples were kept."""
    if path is None or not path.is_file():
        return None
    payload = json.loads(path.read_text())
    return payload if isinstance(payload, dict) and "samples" in payload else None


UNSAFE_TASKS = {"wsm_humaneval", "wsm_mbpp"}  # execute model-written code (pass@1)


def _check_code_execution(tasks: list[str], suite: SuiteConfig) -> None:
    unsafe = sorted(UNSAFE_TASKS.intersection(tasks))
    if unsafe and not suite.allow_code_execution:
        raise PermissionError(
            f"Task(s) {', '.join(unsafe)} execute code written by the model (pass@1). Enable it explicitly "
            "with eval.allow_code_execution=true (SuiteConfig(allow_code_execution=True)), preferably on a "
            "disposable machine, or use the gold bits-per-byte tasks wsm_humaneval_bpb / wsm_mbpp_bpb instead."
        )


def _load_model(model_dir: Path | ModelInMemory, suite: SuiteConfig):
    from wsm_exp.evaluation.throughput import CountingLM

    if isinstance(model_dir, ModelInMemory):
        return CountingLM(pretrained=build_model(model_dir, suite.dtype, suite.device),
                          tokenizer=str(model_dir.folder), batch_size=suite.batch_size)
    return CountingLM(pretrained=str(model_dir), tokenizer=str(model_dir), device=suite.device, dtype=suite.dtype,
                      batch_size=suite.batch_size)


def _parameters(lm) -> int:
    """The evaluated model's parameter count (what the calibration store scales by)."""
    return int(sum(p.numel() for p in lm.model.parameters()))


def _run_task(lm, manager, task: str, suite: SuiteConfig) -> tuple[list[Score], list[dict]]:
    import lm_eval

    lm.tokens = 0
    started = time.perf_counter()
    result = lm_eval.simple_evaluate(
        model=lm, tasks=[task], task_manager=manager, limit=suite.limit_for(task), num_fewshot=suite.num_fewshot,
        random_seed=suite.seed, numpy_random_seed=suite.seed, torch_random_seed=suite.seed,
        # bootstrap_iters=0: lm-eval's bootstrap forks a multiprocessing pool, which deadlocks in
        # threaded workers (submitit, joblib); binary metrics get their closed-form stderr below
        fewshot_random_seed=suite.seed, log_samples=True, bootstrap_iters=0, use_cache=None,
        confirm_run_unsafe_code=suite.allow_code_execution,
    )
    seconds = time.perf_counter() - started
    tokens, rate = lm.tokens, lm.tokens / seconds if seconds > 0 else math.nan
    log.info("%s: %d tokens in %.1f s, %.0f tokens/s", task, tokens, seconds, rate)
    metrics = result["results"][task]
    samples = result.get("n-samples", {})
    n = samples.get(task, {}).get("effective") or sum(v.get("effective", 0) for v in samples.values())
    version = str(result.get("versions", {}).get(task, ""))
    task_hash = tasks_fingerprint() if not suite.builtin else f"lm_eval-{harness_version()}"
    out = []
    for key, value in metrics.items():
        if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):  # alias, sample_len
            continue
        metric, _, _filter = key.partition(",")
        out.append(Score(
            task=task, category=suite.category_of(task), metric=metric, value=float(value),
            stderr=binary_stderr(float(value), int(n)) if metric in BINARY else math.nan,
            higher_is_better=metric not in LOWER_IS_BETTER, n_samples=int(n), task_version=version,
            task_hash=task_hash, harness_version=harness_version(), seconds=seconds, tokens=tokens,
            tokens_per_second=rate,
        ))
    if not out:
        raise RuntimeError(f"lm-eval returned no metric for task {task!r} (got {sorted(metrics)}).")
    return out, sample_rows(task, result.get("samples", {}))


def _cache_path(cache_dir, model_hash: str, task: str, suite: SuiteConfig, data_identity: str) -> Path | None:
    if cache_dir is None:
        return None
    payload = {"model": model_hash, "task": task, "tasks": tasks_fingerprint(), "harness": harness_version(),
               "limit": suite.limit_for(task), "fewshot": suite.num_fewshot, "seed": suite.seed,
               "dtype": suite.dtype, "device": suite.device, "batch_size": suite.batch_size,
               "builtin": suite.builtin, "data": data_identity, "packages": package_versions()}
    key = content_key(payload)
    return Path(cache_dir) / model_hash[:2] / f"{model_hash}-{task}-{key}.json"
