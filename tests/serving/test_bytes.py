"""BYTES that are not UTF-8 text over REST: exact as binary data, never base64 text a client would
mistake for the model's answer. Driven by tritonclient.http and raw HTTP against a real ``omi serve``."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT
from tests.servers import Served, serve

pytestmark = pytest.mark.timeout(120)

MODELS = "tests/serving/bytes_models.py"
#: Not UTF-8 (a lone continuation byte, a truncated sequence, a Latin-1 byte) beside text.
BLOBS = np.array([b"\x80", b"text", b"\xe2\x82", "caf\u00e9".encode("latin-1"), b""], dtype=object)
TEXT = np.array([b"plain", "caf\u00e9".encode()], dtype=object)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve(MODELS, "tests/serving/models.py:ECHOES", protocols=("rest",)) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def client(served: Served) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(served.http_url, network_timeout=60)


def _blobs(values: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("IN", list(values.shape), "BYTES")
    tensor.set_data_from_numpy(values, binary_data=binary)
    return tensor


def test_bytes_that_are_not_text_come_back_exact_as_binary_data(client: httpclient.InferenceServerClient) -> None:
    asked = client.infer("echo_bytes", [_blobs(BLOBS)], outputs=[httpclient.InferRequestedOutput("OUT")])
    assert list(asked.as_numpy("OUT")) == list(BLOBS)
    # No outputs named: tritonclient asks for every output as binary (binary_data_output).
    result = client.infer("blobs", [_blobs(BLOBS)])
    assert list(result.as_numpy("SAME")) == list(BLOBS)
    assert list(result.as_numpy("LENGTHS")) == [1, 4, 2, 4, 0]


def test_bytes_that_are_not_text_asked_as_json_are_refused_naming_the_output_and_the_fix(
    client: httpclient.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer("echo_bytes", [_blobs(BLOBS)], outputs=[httpclient.InferRequestedOutput("OUT", binary_data=False)])
    assert error.value.status() == "400"
    message = str(error.value)
    assert "output 'OUT': BYTES element 0 is not UTF-8 text, which JSON cannot carry" in message
    assert '"binary_data": true' in message and "binary_data=True" in message


def test_text_bytes_stay_json_strings(client: httpclient.InferenceServerClient) -> None:
    result = client.infer(
        "echo_bytes", [_blobs(TEXT, binary=False)], outputs=[httpclient.InferRequestedOutput("OUT", binary_data=False)]
    )
    assert result.get_response()["outputs"][0]["data"] == ["plain", "caf\u00e9"]
    assert "parameters" not in result.get_response()["outputs"][0]


def _post(served: Served, body: dict) -> httpx.Response:
    return httpx.post(f"http://{served.http_url}/v2/models/blobs/infer", json=body, timeout=60)


def _request(outputs: list | None = None, **parameters: object) -> dict:
    encoded = [base64.b64encode(item).decode() for item in BLOBS]
    tensor = {"name": "IN", "datatype": "BYTES", "shape": [len(BLOBS)], "data": encoded}
    body: dict = {"inputs": [{**tensor, "parameters": {"content_type": "base64"}}]}
    if outputs is not None:
        body["outputs"] = outputs
    if parameters:
        body["parameters"] = parameters
    return body


def test_a_client_that_reads_binary_gets_such_an_output_as_binary_though_it_named_no_format(served: Served) -> None:
    # LENGTHS is asked as binary, so the client reads binary outputs: SAME, not text, goes binary too.
    reply = _post(served, _request([{"name": "LENGTHS", "parameters": {"binary_data": True}}, {"name": "SAME"}]))
    assert reply.status_code == 200, reply.text
    length = int(reply.headers["inference-header-content-length"])
    outputs = json.loads(reply.content[:length])["outputs"]
    assert sorted(o["name"] for o in outputs) == ["LENGTHS", "SAME"]
    assert all("binary_data_size" in o["parameters"] and "data" not in o for o in outputs)
    result = httpclient.InferenceServerClient.parse_response_body(reply.content, header_length=length)
    assert list(result.as_numpy("SAME")) == list(BLOBS)
    assert list(result.as_numpy("LENGTHS")) == [1, 4, 2, 4, 0]


@pytest.mark.parametrize(
    "body",
    [
        _request(),  # JSON only: nothing says the client reads binary data
        _request(
            [
                {"name": "LENGTHS", "parameters": {"binary_data": True}},
                {"name": "SAME", "parameters": {"binary_data": False}},
            ]
        ),
        _request(binary_data_output=False),
    ],
    ids=["json-only", "asked-as-json-by-name", "binary-data-output-false"],
)
def test_such_an_output_asked_as_json_is_400_and_never_base64(served: Served, body: dict) -> None:
    reply = _post(served, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith("output 'SAME': BYTES element 0 is not UTF-8 text, which JSON cannot carry")


def test_a_json_output_that_is_text_is_not_affected_by_another_that_is_not(served: Served) -> None:
    text = {"name": "IN", "datatype": "BYTES", "shape": [2], "data": ["plain", "caf\u00e9"]}
    reply = _post(served, {"inputs": [text]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == ["plain", "caf\u00e9"]


def test_bytes_inputs_that_are_not_text_go_in_as_binary_or_tagged_base64(
    client: httpclient.InferenceServerClient, served: Served
) -> None:
    # As binary data (tritonclient refuses to put them in JSON: "Please use binary_data=True").
    with pytest.raises(InferenceServerException, match="binary_data=True"):
        _blobs(BLOBS, binary=False)
    result = client.infer("blobs", [_blobs(BLOBS)], outputs=[httpclient.InferRequestedOutput("LENGTHS")])
    assert list(result.as_numpy("LENGTHS")) == [1, 4, 2, 4, 0]
    # As base64 strings the request tags as such.
    reply = _post(served, _request([{"name": "LENGTHS"}]))
    assert reply.json()["outputs"][0]["data"] == [1, 4, 2, 4, 0]
    # Raw bytes inside JSON text are not JSON: the error says how to send them.
    raw = b'{"inputs": [{"name": "IN", "datatype": "BYTES", "shape": [1], "data": ["\x80"]}]}'
    refused = httpx.post(f"http://{served.http_url}/v2/models/blobs/infer", content=raw, timeout=60)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error.startswith("request body is not valid JSON")
    assert "binary data (binary_data_size" in error and '"content_type": "base64"' in error


def test_omi_predict_prints_such_an_output_as_tagged_base64() -> None:
    request = json.dumps(_request([{"name": "SAME"}]))
    command = [sys.executable, "-m", "omi_adapters.cli", "predict", MODELS, "--input", request]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)["outputs"][0]
    assert output["parameters"] == {"content_type": "base64"}
    assert [base64.b64decode(item) for item in output["data"]] == list(BLOBS)
