"""`omi check` against the real tritonserver serving a repository `omi build triton` wrote."""

from __future__ import annotations

from typing import Any

import pytest

from tests.check.conftest import omi_check

# On a clean checkout the first Triton test also installs tritonserver (see tests/triton).
pytestmark = pytest.mark.timeout(900)


def test_triton_passes(triton_check_server: Any) -> None:
    server = triton_check_server
    result = omi_check(f"http://{server.http_url}", "--grpc", server.grpc_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = result.outcomes()
    assert set(outcomes.values()) == {"PASS"}, result.stdout
    # Triton 2.51 answers a body that is not JSON with 500 and {"error"}: an error status, as the
    # OIP asks ("typically 400"); the row says it is not the typical one.
    assert "500" in result.row("rest", "malformed JSON")["detail"]
    assert "400 is the typical one" in result.row("rest", "malformed JSON")["detail"]
    # No --model: Triton lists model_repository, so its index named the models.
    assert "ready: adder, text" in result.row("rest", "repository index")["detail"]
    for model in ("adder", "text"):
        for check in ("binary output", "binary input", "model config", "versioned paths", "wrong datatype"):
            assert outcomes["rest", f"{check} [{model}]"] == "PASS"
        for check in ("infer raw contents", "infer typed contents", "versioned", "wrong datatype", "wrong shape"):
            assert outcomes["grpc", f"{check} [{model}]"] == "PASS"
    assert outcomes["rest", "statistics"] == "PASS"
    assert result.row("grpc", "unknown model ready")["detail"].endswith("ready=False")
