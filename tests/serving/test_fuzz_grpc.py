"""Runs ``grpc_fuzz_cases.py`` (generated gRPC requests) in a pytest process of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_in_own_process

CASES = Path(__file__).with_name("grpc_fuzz_cases.py")


@pytest.mark.timeout(600)
def test_generated_grpc_requests_fail_only_with_errors_of_the_tree() -> None:
    out = run_in_own_process(CASES, timeout=540)
    assert "1 passed" in out, out
