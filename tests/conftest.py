"""Test-wide setup: offline and hermetic (no network, caches and W&B files under a temp folder)."""

import os
import subprocess
import tempfile

import pytest

pytest_plugins = ["helpers.slurm"]  # the `cluster` fixture: a real one-node Slurm cluster per test module

_HERMETIC = tempfile.mkdtemp(prefix="wsm-exp-tests-")
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_CACHE_DIR": os.path.join(_HERMETIC, "wandb-cache"),
    "WANDB_DATA_DIR": os.path.join(_HERMETIC, "wandb-data"),
    "WANDB_CONFIG_DIR": os.path.join(_HERMETIC, "wandb-config"),
    "HF_DATASETS_CACHE": os.path.join(_HERMETIC, "hf-datasets"),
}.items():
    os.environ[key] = value


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (as a killed writer's would be)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    """Sweep folders of the end-to-end tests (one per session)."""
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture(scope="session")
def cache(root):
    """The content-keyed cache the end-to-end sweeps share: the micro study is trained into it once."""
    return root / "_cache"


SHARED_SERVICE = {"test_slurm.py": "slurm", "test_merge_array.py": "slurm"}  # modules on one worker: one cluster
HEAVY_FIRST = ["test_sweep_e2e.py", "test_beyond_e2e.py", "test_slurm.py", "test_merge_array.py",
               "test_sweep_trust.py", "test_dcp_sweep.py", "test_freshness.py", "test_sft_sweep.py",
               "test_evaluation_reference.py"]  # the longest modules start first, so two workers end together


def pytest_collection_modifyitems(config, items):
    """With ``-n 2 --dist loadgroup`` (pytest-xdist): each module runs whole on one worker (its module and
    session fixtures are built once), the modules that start a Slurm cluster share a worker, and the
    longest modules are handed out first."""
    def module(item) -> str:
        return item.nodeid.split("::")[0].rsplit("/", 1)[-1]

    for item in items:
        item.add_marker(pytest.mark.xdist_group(SHARED_SERVICE.get(module(item), item.nodeid.split("::")[0])))
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: file order within and after
