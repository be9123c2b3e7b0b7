"""Runs ``grpc_wire_cases.py`` (gRPC ModelInfer's wire handling) in a pytest process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CASES = Path(__file__).with_name("grpc_wire_cases.py")


@pytest.mark.timeout(300)
def test_grpc_wire_cases() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\n8 passed" in done.stdout, done.stdout
