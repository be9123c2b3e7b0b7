"""``omi check`` runs as a subprocess (it imports the project's ``inference`` protos, which cannot
share a process with tritonclient.grpc), against real servers started here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, ROOT
from tests.servers import Served, serve
from tests.triton.conftest import triton_install  # noqa: F401 - the fixture, shared with the Triton tests

#: tests/serving/models.py: ``echo_bool`` ... ``echo_bf16``, each ``IN`` -> ``OUT`` of one datatype, shape [-1].
ECHOES = "tests/serving/models.py:ECHOES"
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES", "BF16")  # fmt: skip


@dataclass
class Checked:
    """An ``omi check`` run: its exit code, output and (with --json) rows."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def rows(self) -> list[dict[str, str]]:
        return list(json.loads(self.stdout)["rows"])

    def outcomes(self) -> dict[tuple[str, str], str]:
        return {(r["protocol"], r["check"]): r["outcome"] for r in self.rows}

    def row(self, protocol: str, check: str) -> dict[str, str]:
        [found] = [r for r in self.rows if (r["protocol"], r["check"]) == (protocol, check)]
        return found

    def failed(self) -> set[tuple[str, str]]:
        return {k for k, v in self.outcomes().items() if v == "FAIL"}


def omi_check(*args: str, timeout: float = 120) -> Checked:
    result = subprocess.run(
        [sys.executable, "-m", "omi_adapters.cli", "check", *args],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=timeout, check=False,
    )  # fmt: skip
    return Checked(result.returncode, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def served() -> Iterator[Served]:
    """``omi serve`` of the examples and an identity model per datatype, over REST, gRPC and OMI (OMI serves adder)."""
    targets = (EXAMPLES / "adder.py", EXAMPLES / "text.py", EXAMPLES / "iris" / "model.py", ECHOES)
    with serve(*targets, protocols=("rest", "grpc", "omi")) as srv:
        srv.wait_ready()  # also loads the lazy iris model
        yield srv


@pytest.fixture(scope="session")
def triton_check_server(triton_install: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:  # noqa: F811
    """A real tritonserver serving what `omi build triton` wrote for two examples."""
    from omi_triton.server import TritonServer

    from omi_adapters.cli import main as omi

    repo: Path = tmp_path_factory.mktemp("check-triton") / "repo"
    assert omi(["build", "triton", str(EXAMPLES / "adder.py"), str(EXAMPLES / "text.py"), "--out", str(repo)]) == 0
    server = TritonServer(triton_install, repo)
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()
