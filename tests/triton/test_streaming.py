"""A streaming model on the real tritonserver: `omi build triton` writes a decoupled model, and
Triton's gRPC stream, read by tritonclient, carries the same tokens and the same final-response
flags as `omi serve`'s.

tritonserver comes from the installation the other Triton tests use (``.tools/tritonserver``),
whatever checkout it was made from; its models run in a model environment of this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omi_adapters.cli import main as omi
from omi_adapters.targets import load_target
from tests.servers import serve
from tests.triton.conftest import EXAMPLES, HERE, ROOT

pytestmark = pytest.mark.timeout(900)

MARKOV = EXAMPLES / "markov" / "model.py"
STREAM_MODELS = ROOT / "tests" / "serving" / "stream_models.py"


@pytest.fixture(scope="module")
def marks() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="omi-triton-marks-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("triton-stream") / "repo"
    include = ["--include", str(MARKOV.with_name("corpus.txt"))]
    assert omi(["build", "triton", str(MARKOV), "--out", str(repo), *include]) == 0
    assert omi(["build", "triton", str(STREAM_MODELS), "--out", str(repo)]) == 0
    return repo


def _model_env(shared: Path, where: Path) -> Path:
    """A model environment of this checkout: a venv whose ``sys.path`` is this checkout, then the
    shared environment's packages (numpy<2, scikit-learn), which it only reads."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    shared_site = subprocess.run(
        [shared / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    lines = [ROOT, ROOT / "adapters" / "triton", shared_site]
    Path(site, "omi-adapters-checkout.pth").write_text("".join(f"{line}\n" for line in lines))
    return where


@pytest.fixture(scope="module")
def tritonserver(repo: Path, marks: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from omi_triton.server import Installation, TritonServer, existing

    installation = existing(ROOT / ".tools" / "tritonserver")
    if installation is None:
        from tests.triton.conftest import _fetch_script

        installation = _fetch_script().fetch()
    # The installation's own model environment may name another checkout: use one of this one.
    env = _model_env(installation.python_env, tmp_path_factory.mktemp("model-env") / "env")
    installation = Installation(home=installation.home, python_env=env)
    saved = os.environ.get("STREAM_MARKS")
    os.environ["STREAM_MARKS"] = str(marks)  # the stubs inherit tritonserver's environment
    try:
        server = TritonServer(installation, repo)
        server.start(timeout=180)
    finally:
        if saved is None:
            os.environ.pop("STREAM_MARKS", None)
        else:
            os.environ["STREAM_MARKS"] = saved
    try:
        yield server
    finally:
        server.stop()


def test_a_streaming_model_is_built_decoupled(repo: Path) -> None:
    config = (repo / "markov" / "config.pbtxt").read_text()
    assert "model_transaction_policy {\n  decoupled: true\n}" in config
    assert "max_batch_size: 0" in config or "max_batch_size" not in config


def _drive(url: str, tag: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / "stream_driver.py"), url, tag],
        check=False, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _wait_for(path: Path, line: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path.name}: no {line!r} within {timeout}s")


def test_tritonserver_streams_the_same_tokens_as_omi_serve(tritonserver: Any, marks: Path) -> None:
    markov = load_target(str(MARKOV))[0]
    predict = markov.wait_ready()

    def expected(prompt: str, count: int, seed: int) -> list[str]:
        arrays = {
            "text_input": np.array([prompt.encode()], dtype=object),
            "max_tokens": np.array([count], dtype=np.int32),
            "seed": np.array([seed], dtype=np.int64),
        }
        return [bytes(t[0]).decode() for t in predict(**arrays)]

    triton = _drive(tritonserver.grpc_url, "triton-endless")
    env = {"STREAM_MARKS": str(marks)}
    with serve(MARKOV, STREAM_MODELS, protocols=("grpc",), env=env) as served:
        ours = _drive(served.grpc_url, "omi-endless")

    for report in (triton, ours):
        empty = report["empty_final"]
        assert [e["tokens"][0] for e in empty[:-1]] == expected("The river", 30, 5)
        assert [e["final"] for e in empty] == [False] * 30 + [True] and empty[-1]["tokens"] == []
        assert {e["id"] for e in empty} == {"empty"}
        assert [e["tokens"][0] for e in report["plain"]] == expected("The sea", 20, 2)
        fails = report["fails"]
        assert [e["tokens"] for e in fails[:2]] == [["t0"], ["t1"]]
        assert "the chain broke after two tokens" in fails[2]["error"]
        assert [e["tokens"] for e in report["endless"]] == [["t0"], ["t1"], ["t2"]]
    # The same responses, flags included, from both servers.
    assert triton["empty_final"] == ours["empty_final"]
    assert [e["tokens"] for e in triton["plain"]] == [e["tokens"] for e in ours["plain"]]
    # Cancelling the stream closed the endless generator on both.
    _wait_for(marks / "omi-endless", "closed")
    _wait_for(marks / "triton-endless", "closed")
