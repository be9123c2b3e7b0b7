"""Shared fixtures: the repository's paths, and a pytest run of a test file in a process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


def run_in_own_process(cases: Path, timeout: float) -> str:
    """Run the tests of ``cases`` in a pytest process of its own and return its output, failing with
    it unless they all pass. For tests that import the project's ``inference`` protobuf package,
    which cannot share a process with tritonclient's (other tests import it)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
