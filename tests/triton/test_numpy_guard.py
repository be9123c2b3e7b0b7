"""The Python-backend stub of tritonserver 2.51 reads numpy 2 arrays wrongly (it saw [1, 1] for
[1, 2] here): in such an environment the adapter refuses to load rather than serve wrong data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omi_triton.server import Installation, TritonServer
from tritonclient import http

from omi_adapters.cli import main as omi
from tests.triton.conftest import EXAMPLES

# On a clean checkout the first test here also installs tritonserver (a 55 MB wheel and a
# model environment, 0.5 to 2 minutes here): allow for it on top of the tests' own seconds.
pytestmark = pytest.mark.timeout(900)


def test_a_numpy_2_model_environment_is_refused_with_the_reason(triton_install: Any, tmp_path: Path) -> None:
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"the test environment has numpy {np.__version__}, not 2")
    assert omi(["build", "triton", str(EXAMPLES / "adder.py"), "--out", str(tmp_path / "repo")]) == 0
    # The project's own venv has numpy 2 (and omi-adapters installed): use it as the model environment.
    numpy2 = Installation(home=triton_install.home, python_env=Path(sys.prefix))
    with TritonServer(numpy2, tmp_path / "repo") as server:
        client = http.InferenceServerClient(server.http_url)
        try:
            (entry,) = client.get_model_repository_index()
            assert entry["state"] == "UNAVAILABLE"
            assert "reads numpy 2." in entry["reason"] and "install numpy<2 in the model environment" in entry["reason"]
        finally:
            client.close()
