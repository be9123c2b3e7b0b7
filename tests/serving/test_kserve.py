"""KServe's own SDK clients against a real ``omi serve``: ``InferenceRESTClient`` and ``InferenceGRPCClient``.

kserve pins grpcio, protobuf and others at versions of its own, so it lives in a virtual
environment of its own under ``.tools/`` (``scripts/fetch_kserve.py``, installed on first use);
``kserve_driver.py`` runs there as a subprocess, against the session's server on loopback, and
reports what the clients got. The tests skip only when the package index cannot be reached.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.servers import Served

pytestmark = pytest.mark.timeout(900)

FETCH = ROOT / "scripts" / "fetch_kserve.py"
DRIVER = Path(__file__).with_name("kserve_driver.py")
#: Exit status of the fetch script when the package index cannot be reached.
UNREACHABLE = 3

X = np.array([[1, 2.5], [-3, 0.125]], dtype=np.float32)
WIDE = (np.arange(2000, dtype=np.float32) - 1000) / 8  # a reply of about 16 KiB: compressed
CASES: dict[str, dict[str, Any]] = {
    # KServe's clients name no version: the server answers with the newest adder, version 2 (X + 2).
    "FP32": {"model": "adder", "input": "X", "output": "Y", "datatype": "FP32", "sent": X, "expected": X + 2},
    "FP32-wide": {"model": "echo_fp32", "input": "IN", "output": "OUT", "datatype": "FP32", "sent": WIDE},
    "INT64": {
        "model": "async_adder", "input": "X", "output": "Y", "datatype": "INT64",
        "sent": np.array([-(2**62), 0, 2**62], dtype=np.int64),
        "expected": np.array([-(2**62) + 1, 1, 2**62 + 1], dtype=np.int64),
    },
    "BOOL": {"model": "echo_bool", "input": "IN", "output": "OUT", "datatype": "BOOL", "sent": np.array([True, False, True])},
    "BYTES": {
        "model": "echo_bytes", "input": "IN", "output": "OUT", "datatype": "BYTES",
        "sent": np.array([b"hello", "h\u00e9llo w\u00f6rld".encode(), b""], dtype=object),
    },
    "BYTES-not-text": {
        "model": "echo_bytes", "input": "IN", "output": "OUT", "datatype": "BYTES",
        "sent": np.array([b"\xff\x00", b"ok"], dtype=object),
    },
}  # fmt: skip


def _plan_case(case: dict[str, Any]) -> dict[str, Any]:
    sent = case["sent"]
    data = [v.hex() for v in sent.reshape(-1)] if case["datatype"] == "BYTES" else sent.reshape(-1).tolist()
    keys = ("model", "input", "output", "datatype")
    return {**{k: case[k] for k in keys}, "shape": list(sent.shape), "data": data}


@pytest.fixture(scope="session")
def kserve_python() -> Path:
    """The interpreter of the kserve venv, installed on first use."""
    done = subprocess.run([sys.executable, str(FETCH)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode == UNREACHABLE:
        reason = f"KServe's SDK cannot be installed: {done.stderr.strip()}"
        print(reason)
        pytest.skip(reason)
    if done.returncode != 0:
        pytest.fail(f"{FETCH.name} failed:\n{done.stdout}\n{done.stderr}")
    return Path(json.loads(done.stdout.strip().splitlines()[-1])["python"])


@pytest.fixture(scope="module")
def found(kserve_python: Path, server: Served) -> dict[str, Any]:
    plan = {
        "rest": f"http://{server.http_url}",
        "grpc": server.grpc_url,
        "cases": [_plan_case(c) for c in CASES.values()],
    }
    done = subprocess.run(
        [str(kserve_python), str(DRIVER)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_health_as_kserve_clients_read_it(found: dict[str, Any]) -> None:
    for transport in ("rest", "grpc"):
        assert found[transport]["live"] is True
        assert found[transport]["ready"] is True
        assert found[transport]["model_ready"] is True
    assert found["rest"]["unknown_model_ready"] is False  # 404: KServe's REST client reads "not ready"
    assert found["grpc"]["unknown_model_ready"] is False  # ModelReady answers ready=false, as Triton does


def test_model_metadata_as_kserve_clients_read_it(found: dict[str, Any]) -> None:
    contract = {
        "name": "adder",
        "versions": ["1", "2"],
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, -1]}],
        "outputs": [{"name": "Y", "datatype": "FP32", "shape": [-1, -1]}],
    }
    rest = found["rest"]["metadata"]
    assert {key: rest[key] for key in contract} == contract
    assert found["grpc"]["metadata"] == contract


def _results(found: dict[str, Any], transport: str, model: str, binary: bool, index: int) -> dict[str, Any]:
    matching = [r for r in found[transport]["infer"] if r["model"] == model and r["binary"] is binary]
    return matching[index]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("name", [n for n in CASES if n != "BYTES-not-text"])
def test_inference_as_kserve_clients_read_it(found: dict[str, Any], name: str, transport: str, binary: bool) -> None:
    case = CASES[name]
    index = [n for n, c in CASES.items() if c["model"] == case["model"]].index(name)
    result = _results(found, transport, case["model"], binary, index)
    assert "error" not in result, result["error"]
    output = result["output"]
    expected = case.get("expected", case["sent"])
    assert output["datatype"] == case["datatype"]
    assert output["shape"] == list(expected.shape)
    if case["datatype"] == "BYTES":
        assert [bytes.fromhex(v) for v in output["data"]] == list(expected.reshape(-1))
    else:
        np.testing.assert_array_equal(np.array(output["data"], dtype=expected.dtype), expected.reshape(-1))
    if transport == "rest":
        # httpx, under KServe's client, asks for gzip: the large reply comes compressed, the small ones not.
        assert result["content_encoding"] == ("gzip" if name == "FP32-wide" else None)


def test_bytes_that_are_not_text_reach_kserve_grpc_exact(found: dict[str, Any]) -> None:
    sent = CASES["BYTES-not-text"]["sent"]
    raw = _results(found, "grpc", "echo_bytes", True, 1)
    assert [bytes.fromhex(v) for v in raw["output"]["data"]] == list(sent)
    # KServe's clients themselves refuse to put such bytes in JSON (REST) or typed contents (gRPC),
    # and its REST client turns even a binary reply into text: the limit is the client's, not ours.
    for transport, binary in (("grpc", False), ("rest", False), ("rest", True)):
        error = _results(found, transport, "echo_bytes", binary, 1)["error"]
        assert error.startswith("InferenceError: Failed to encode"), error
        assert "using UTF-8. Please use binary_data=True" in error


def test_an_unknown_model_is_the_servers_message(found: dict[str, Any]) -> None:
    assert found["rest"]["unknown_model_error"].startswith("unknown model 'nobody', '404 Not Found'")
