"""Installing the package prints no warning of ours (setuptools' deprecations of pyproject fields)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # builds the package's metadata in an isolated build environment (~10-30 s)
def test_pip_install_prints_no_build_warning():
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--dry-run", "-e", str(ROOT)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert "Would install wsm-exp" in output or "Would install wsm_exp" in output, output[-2000:]
    ours = [line for line in output.splitlines() if "Warning" in line and ("setuptools" in line or "pyproject" in line)]
    assert not ours, "\n".join(ours)
