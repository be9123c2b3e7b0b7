"""Runs ``grpc_wire_cases.py`` (gRPC ModelInfer's wire handling) in a pytest process of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_in_own_process

CASES = Path(__file__).with_name("grpc_wire_cases.py")


@pytest.mark.timeout(300)
def test_grpc_wire_cases() -> None:
    out = run_in_own_process(CASES, timeout=280)
    assert "\n9 passed" in out, out
