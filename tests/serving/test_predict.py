"""`omi predict` answers one request through the same DataPlane as `omi serve`: the same outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import EXAMPLES, ROOT
from tests.servers import serve

REQUESTS = {
    "adder": {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [1, 2.5, -3, 0.125]}]},
    "text": {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [2], "data": ["hello omi", "a b c"]}]},
    "iris": {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]},
}
TARGETS = [str(EXAMPLES / "adder.py"), str(EXAMPLES / "text.py"), str(EXAMPLES / "iris" / "model.py")]


def _predict(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "omi_adapters.cli", "predict", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, input=stdin, check=False)


def test_predict_prints_what_serve_answers_for_each_example() -> None:
    with serve(*TARGETS, protocols=("rest",)) as srv:
        srv.wait_ready()
        for name, request in REQUESTS.items():
            served = httpx.post(f"http://{srv.http_url}/v2/models/{name}/infer", json=request, timeout=60)
            assert served.status_code == 200, served.text
            done = _predict(*TARGETS, "--model", name, "--input", json.dumps(request))
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == served.json()


def test_predict_reads_a_file_or_stdin_and_names_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({**REQUESTS["adder"], "model_name": "adder"}))
    from_file = _predict(TARGETS[0], "--input", f"@{path}")
    from_stdin = _predict(TARGETS[0], "--input", "@-", stdin=path.read_text())
    assert from_file.returncode == from_stdin.returncode == 0
    assert json.loads(from_file.stdout) == json.loads(from_stdin.stdout)
    assert json.loads(from_file.stdout)["outputs"][0]["data"] == [2.0, 3.5, -2.0, 1.125]
    bad = _predict(TARGETS[0], "--input", '{"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}]}')
    assert bad.returncode == 2
    assert bad.stderr.strip() == "omi: input 'X': expected FP32 [-1, -1], got INT8 [1]"


def test_a_failing_predict_exits_1() -> None:
    failing = "tests/serving/models.py:failing"
    request = {"inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [-1]}]}
    done = _predict(failing, "--input", json.dumps(request))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "omi: model 'failing' failed: ValueError: the model cannot take negative numbers"
    assert "tests/serving/models.py" in done.stderr  # the model's own traceback, to debug it
