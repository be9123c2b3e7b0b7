"""The built bundle under the real Runtime Interface Emulator and awslambdaric, fed AWS's own events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from omi_lambda.build import PYTHONS

from tests.conftest import ROOT

from .events import http_event, response_body, response_headers
from .rie import Emulator, runtime_path

MODELS = "tests/lambda/lambda_models.py"
TARGETS = [
    "examples/adder.py", "examples/text.py", f"{MODELS}:failing", f"{MODELS}:Counter", f"{MODELS}:big", f"{MODELS}:exits",
]  # fmt: skip
KINDS = ["http-api", "rest-api", "alb"]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
COUNT = {"model_name": "counter", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [0.5]}]}


@dataclass
class Function:
    emulator: Emulator
    first: Any
    second: Any
    template: dict[str, Any]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``omi build lambda ... --install-deps`` for this interpreter's Python (pip's cache kept in .tools)."""
    if PYTHON not in PYTHONS:
        pytest.skip(f"Lambda has no python{PYTHON} runtime to build the bundle's dependencies for")
    out = tmp_path_factory.mktemp("lambda") / "bundle"
    command = [sys.executable, "-m", "omi_adapters.cli", "build", "lambda", *TARGETS, "--out", str(out)]
    command += ["--python", PYTHON, "--install-deps"]
    env = {**os.environ, "PIP_CACHE_DIR": str(ROOT / ".tools" / "lambda" / "pip-cache")}
    done = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def function(
    bundle: Path, lambda_tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Function]:
    """One execution environment run as the template describes it; its first two invocations."""
    template = yaml.safe_load((bundle / "template.yaml").read_text())
    properties = template["Resources"]["ModelFunction"]["Properties"]
    shim = runtime_path(tmp_path_factory.mktemp("runtime"))
    emulator = Emulator(
        lambda_tools["rie"], bundle / properties["CodeUri"], properties["Handler"],
        properties["Environment"]["Variables"], shim,
    )  # fmt: skip
    try:
        first = emulator.invoke(COUNT)
        second = emulator.invoke(COUNT)
        for answer in (first, second):
            assert "outputs" in answer, f"not an OIP response: {answer}\n{emulator.log()[-3000:]}"
        yield Function(emulator, first, second, template)
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def call(function: Function, events_dir: Path) -> Any:
    """``call(kind, method, path, body, headers) -> (status, headers, body)`` through the emulator."""

    def send(kind: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
        response = function.emulator.invoke(http_event(events_dir, kind, method, path, body, headers))
        assert "statusCode" in response, f"not an HTTP answer: {response}\n{function.emulator.log()[-3000:]}"
        return response["statusCode"], response_headers(response), response_body(response)

    return send


def test_cold_start_is_flagged_on_the_first_invocation_only(function: Function) -> None:
    assert function.first["parameters"]["cold_start"] is True, function.first
    assert function.second["parameters"]["cold_start"] is False, function.second
    first = {o["name"]: o["data"] for o in function.first["outputs"]}
    second = {o["name"]: o["data"] for o in function.second["outputs"]}
    # The lazy model loaded once, in this one environment, on its first invocation.
    assert first["LOADS"] == second["LOADS"] == [1]
    assert first["PID"] == second["PID"]


def test_the_log_reports_init_and_load_durations(function: Function) -> None:
    log = function.emulator.log()
    assert "INIT REPORT" in log  # the emulator's own lifecycle, as Lambda logs it
    lines = [line for line in log.splitlines() if "omi-lambda cold start" in line]
    assert len(lines) == 1, log[-3000:]
    line = lines[0]
    assert "init " in line and "first invocation " in line
    assert "adder v1 (eager) ready in" in line
    assert "counter v1 (lazy) ready in" in line


def _json_infer(name: str, inputs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


ADD = [{"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]


@pytest.mark.parametrize("content_type", [None, "application/json"])
@pytest.mark.parametrize("kind", KINDS)
def test_http_json(call: Any, kind: str, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}

    status, response_headers_, body = call(kind, "GET", "/v2/health/ready", headers=headers)
    assert (status, json.loads(body)) == (200, {"ready": True})
    assert response_headers_["x-omi-cold-start"] == "false"

    status, _, body = call(kind, "GET", "/v2/models/adder", headers=headers)
    assert status == 200 and json.loads(body)["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, -1]}]

    status, _, body = call(kind, "POST", "/v2/models/adder/infer", _json_infer("adder", ADD), headers)
    assert status == 200, body
    output = json.loads(body)["outputs"][0]
    assert (output["name"], output["shape"], output["data"]) == ("Y", [2, 2], [2.0, 3.0, 4.0, 5.0])

    text = [{"name": "TEXT", "datatype": "BYTES", "shape": [2], "data": ["hello lambda", "a b c"]}]
    status, _, body = call(kind, "POST", "/v2/models/text/infer", _json_infer("text", text), headers)
    outputs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
    assert status == 200 and outputs == {"UPPER": ["HELLO LAMBDA", "A B C"], "WORDS": [2, 3]}


@pytest.mark.parametrize("content_type", [None, "application/json"])
@pytest.mark.parametrize("kind", KINDS)
def test_http_errors(call: Any, kind: str, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    cases = [
        ("POST", "/v2/models/nosuch/infer", _json_infer("nosuch", ADD), 404, "unknown model 'nosuch'"),
        ("GET", "/v2/models/nosuch", b"", 404, "unknown model 'nosuch'"),
        ("POST", "/v2/models/adder/infer", b"{not json", 400, "not valid JSON"),
        ("POST", "/v2/models/adder/infer", _json_infer("adder", [{**ADD[0], "datatype": "INT32"}]), 400,
         "input 'X': expected FP32 [-1, -1], got INT32 [2, 2]"),
        ("POST", "/v2/models/failing/infer", _json_infer("failing", [{**ADD[0], "shape": [4]}]), 500,
         "this model always fails"),
        ("GET", "/v2/nowhere", b"", 404, "no such endpoint"),
    ]  # fmt: skip
    for method, path, body, status, message in cases:
        got, response_headers_, answer = call(kind, method, path, body, headers)
        assert got == status, (path, answer)
        assert message in json.loads(answer)["error"]
        assert response_headers_["content-type"] == "application/json"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_http_binary(call: Any, kind: str, content_type: str | None) -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = json.dumps({
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": data.nbytes}}],
        "parameters": {"binary_data_output": True},
    }).encode()  # fmt: skip
    headers = {"Inference-Header-Content-Length": str(len(header))}
    if content_type:
        headers["content-type"] = content_type
    status, response_headers_, body = call(kind, "POST", "/v2/models/adder/infer", header + data.tobytes(), headers)
    assert status == 200, body
    assert response_headers_["content-type"] == "application/octet-stream"
    length = int(response_headers_["inference-header-content-length"])
    output = json.loads(body[:length])["outputs"][0]
    assert output["parameters"]["binary_data_size"] == data.nbytes
    np.testing.assert_array_equal(np.frombuffer(body[length:], dtype="<f4").reshape(2, 3), data + 1)


def test_direct_invocation(function: Function) -> None:
    answer = function.emulator.invoke({"model_name": "adder", "id": "r1", "inputs": ADD})
    assert answer == {
        "model_name": "adder", "model_version": "1", "id": "r1",
        "outputs": [{"name": "Y", "datatype": "FP32", "shape": [2, 2], "data": [2.0, 3.0, 4.0, 5.0]}],
        "parameters": {"cold_start": False},
    }  # fmt: skip
    errors = [
        ({"inputs": ADD}, 400, "serves several models"),
        ({"model_name": "nosuch", "inputs": ADD}, 404, "unknown model 'nosuch'"),
        ({"model_name": "adder", "inputs": [{"name": "X", "datatype": "FP32", "shape": [3], "data": [1]}]}, 400,
         "'data' has 1 elements, shape [3] needs 3"),
        ({"model_name": "failing", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1]}]}, 500,
         "this model always fails"),
        ({"something": "else"}, 400, "unsupported event"),
    ]  # fmt: skip
    for event, status, message in errors:
        answer = function.emulator.invoke(event)
        assert answer["status_code"] == status, answer
        assert message in answer["error"] and answer["cold_start"] is False


def test_a_predict_calling_sys_exit_fails_its_request_and_the_environment_goes_on(
    function: Function, call: Any
) -> None:
    request = [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1]}]
    status, headers, body = call("http-api", "POST", "/v2/models/exits/infer", _json_infer("exits", request))
    assert status == 500 and headers["content-type"] == "application/json", body
    assert json.loads(body) == {"error": "model 'exits' failed: SystemExit: the model called sys.exit"}
    answer = function.emulator.invoke({"model_name": "exits", "inputs": request})
    assert answer["status_code"] == 500 and "SystemExit" in answer["error"], answer
    # The same execution environment (one load of the lazy counter, the same process) serves on.
    again = function.emulator.invoke(COUNT)
    assert {o["name"]: o["data"] for o in again["outputs"]}["LOADS"] == [1], again
    assert again["outputs"][1]["data"] == function.first["outputs"][1]["data"]
    assert "Traceback" in function.emulator.log()  # logged once, with its traceback


def test_a_response_over_6_mb_is_refused_with_413(call: Any) -> None:
    request = {"inputs": [{"name": "N", "datatype": "INT64", "shape": [1], "data": [7_000_000]}]}
    status, _, body = call("http-api", "POST", "/v2/models/big/infer", json.dumps(request).encode())
    assert status == 413 and "exceeds Lambda's limit" in json.loads(body)["error"]


def test_the_bundle_carries_no_grpc(bundle: Path) -> None:
    code = bundle / "function"
    assert (code / "numpy").is_dir() and (code / "mangum").is_dir()
    assert not (code / "grpc").exists() and not (code / "omi_adapters" / "protos").exists()


def _request_ids(log: str) -> list[str]:
    """The invocations' request ids, in order, from the runtime's ``START RequestId: ...`` lines."""
    return [line.split("RequestId: ")[1].split()[0] for line in log.splitlines() if line.startswith("START RequestId")]


def _emf_lines(log: str) -> list[dict[str, Any]]:
    """The log's embedded-metric-format lines, each checked against the specification's rules."""
    found = []
    for line in log.splitlines():
        if '{"_aws"' not in line:
            continue
        # Without Lambda's telemetry channel, awslambdaric writes its log records to stdout too,
        # and a record with a traceback ends without a newline: the EMF line may follow it.
        entry = json.loads(line[line.index('{"_aws"') :])  # the rest of the line is one JSON object
        meta = entry["_aws"]
        assert isinstance(meta["Timestamp"], int)
        for directive in meta["CloudWatchMetrics"]:
            assert directive["Namespace"] == "omi-adapters"
            for dimensions in directive["Dimensions"]:
                assert dimensions and all(isinstance(entry[d], str) for d in dimensions)  # a dimension is a string
            for metric in directive["Metrics"]:
                assert metric["Unit"] in ("Count", "Milliseconds")
                assert isinstance(entry[metric["Name"]], (int, float))  # each metric's value is a member
        found.append(entry)
    return found


def test_each_request_is_an_emf_line_with_its_model_outcome_duration_and_request_id(
    function: Function, call: Any
) -> None:
    before = len(_emf_lines(function.emulator.log()))
    assert "outputs" in function.emulator.invoke({"model_name": "adder", "inputs": ADD})
    assert function.emulator.invoke({"model_name": "nosuch", "inputs": ADD})["status_code"] == 404
    status, _, _ = call("http-api", "POST", "/v2/models/adder/infer", _json_infer("adder", ADD))
    assert status == 200
    log = function.emulator.log()
    lines = _emf_lines(log)
    good, unknown, http = lines[before:]
    assert (good["model"], good["version"], good["outcome"], good["protocol"]) == ("adder", "1", "200", "direct")
    assert (good["Requests"], good["Errors"], good["ColdStarts"], good["cold_start"]) == (1, 0, 0, False)
    assert good["Duration"] > 0
    assert (unknown["model"], unknown["outcome"], unknown["error"], unknown["Errors"]) == ("", "404", "NOT_FOUND", 1)
    assert (http["model"], http["outcome"], http["protocol"], http["Errors"]) == ("adder", "200", "rest", 0)
    # Each line names its invocation, as the runtime's START line does; the first was a cold start.
    starts = _request_ids(log)
    assert [e["request_id"] for e in (good, unknown, http)] == starts[-3:]
    assert lines[0]["ColdStarts"] == 1 and lines[0]["model"] == "counter" and lines[0]["request_id"] == starts[0]


def test_the_runtime_puts_the_request_id_in_every_log_line_of_ours(function: Function) -> None:
    log = function.emulator.log()
    starts = _request_ids(log)
    (cold,) = [line for line in log.splitlines() if "omi-lambda cold start" in line]
    assert starts[0] in cold  # awslambdaric's log format: level, time, request id, message
