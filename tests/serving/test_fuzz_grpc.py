"""Runs ``grpc_fuzz_cases.py`` (generated gRPC requests) in a pytest process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CASES = Path(__file__).with_name("grpc_fuzz_cases.py")


@pytest.mark.timeout(600)
def test_generated_grpc_requests_fail_only_with_errors_of_the_tree() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=540)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
