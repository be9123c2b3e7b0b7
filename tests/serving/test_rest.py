"""OIP REST end to end: a real ``omi serve`` driven by ``tritonclient.http`` and raw HTTP."""

from __future__ import annotations

import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from omi_adapters import DATATYPES
from tests.servers import Served

pytestmark = pytest.mark.timeout(120)

#: An example array of every datatype, in the numpy type tritonclient expects for it.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([True, False, True]),
    "UINT8": np.array([0, 7, 255], dtype=np.uint8),
    "UINT16": np.array([0, 7, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 7, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 7, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-(2**15), 0, 2**15 - 1], dtype=np.int16),
    "INT32": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
    "INT64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "FP16": np.array([-1.5, 0.0, 65504.0], dtype=np.float16),
    "FP32": np.array([-1.5, 3.25, 1e30], dtype=np.float32),
    "FP64": np.array([-1.5, 3.25, 1e300], dtype=np.float64),
    "BYTES": np.array([b"hello", "h\u00e9llo".encode(), b""], dtype=object),
    "BF16": np.array([-1.5, 0.0, 256.0], dtype=ml_dtypes.bfloat16),
}
# tritonclient refuses to send these inside JSON (FP16/BF16 have no JSON form in its client).
JSON_UNSUPPORTED = {"BF16"}


@pytest.fixture(scope="module")
def client(server: Served) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url, network_timeout=60)


@pytest.fixture(scope="module")
def http(server: Served) -> httpx.Client:
    with httpx.Client(base_url=f"http://{server.http_url}", timeout=60) as c:
        yield c


def _infer(client: httpclient.InferenceServerClient, model: str, datatype: str, array: np.ndarray, binary: bool, **kw):
    tensor = httpclient.InferInput("IN", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    output = httpclient.InferRequestedOutput("OUT", binary_data=binary)
    return client.infer(model, [tensor], outputs=[output], **kw)


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("adder")
    assert client.is_model_ready("adder", "1")
    assert not client.is_model_ready("nobody")
    meta = client.get_server_metadata()
    assert meta["name"] == "omi-adapters"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_plain_and_versioned(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("iris")
    assert meta["name"] == "iris"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    assert client.get_model_metadata("adder", "2")["versions"] == ["1", "2"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips(
    client: httpclient.InferenceServerClient, http: httpx.Client, datatype: str, binary: bool
) -> None:
    if not binary and datatype in JSON_UNSUPPORTED:
        # tritonclient sends BF16 only as binary data; the server also takes it as JSON numbers.
        body = {"inputs": [{"name": "IN", "datatype": datatype, "shape": [3], "data": [-1.5, 0.0, 256.0]}]}
        response = http.post(f"/v2/models/echo_{datatype.lower()}/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [-1.5, 0.0, 256.0]
        return
    sample = SAMPLES[datatype]
    result = _infer(client, f"echo_{datatype.lower()}", datatype, sample, binary)
    out = result.as_numpy("OUT")
    assert out.shape == sample.shape
    if datatype == "BYTES":
        # tritonclient hands JSON BYTES back as str, binary ones as bytes.
        assert [x.encode() if isinstance(x, str) else x for x in out] == list(sample)
    else:
        np.testing.assert_array_equal(out.astype(sample.dtype), sample)


def test_several_models_and_versions(client: httpclient.InferenceServerClient) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = httpclient.InferInput("X", [2, 3], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("adder", [tensor], model_version="1").as_numpy("Y"), x + 1)
    np.testing.assert_array_equal(client.infer("adder", [tensor], model_version="2").as_numpy("Y"), x + 2)
    # No version: the newest.
    np.testing.assert_array_equal(client.infer("adder", [tensor]).as_numpy("Y"), x + 2)

    text = httpclient.InferInput("TEXT", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"one two", "drei vier f\u00fcnf".encode()], dtype=object))
    result = client.infer("text", [text], request_id="req-7")
    assert result.get_response()["id"] == "req-7"
    assert list(result.as_numpy("UPPER")) == [b"ONE TWO", "DREI VIER F\u00dcNF".encode()]
    assert list(result.as_numpy("WORDS")) == [2, 3]


def test_iris_classifies(client: httpclient.InferenceServerClient) -> None:
    features = httpclient.InferInput("features", [2, 4], "FP64")
    features.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]))
    result = client.infer("iris", [features])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert list(result.as_numpy("label")) == [b"setosa", b"virginica"]


def test_requested_outputs_only(client: httpclient.InferenceServerClient) -> None:
    text = httpclient.InferInput("TEXT", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"a b c"], dtype=object))
    result = client.infer("text", [text], outputs=[httpclient.InferRequestedOutput("WORDS")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["WORDS"]


@pytest.mark.parametrize(
    ("model", "body", "status", "message"),
    [
        ("nobody", {"inputs": []}, 404, "unknown model 'nobody'"),
        ("failing", {"inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [1]}]}, 500, "ValueError"),
        ("adder", {"inputs": [{"name": "X", "datatype": "INT32", "shape": [2, 3], "data": [1] * 6}]}, 400, "INT32"),
    ],
)
def test_errors_have_status_and_message(http: httpx.Client, model: str, body: dict, status: int, message: str) -> None:
    response = http.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error
    assert "Traceback" not in error


def test_unknown_version_is_404(http: httpx.Client) -> None:
    response = http.get("/v2/models/adder/versions/9")
    assert response.status_code == 404
    assert "no version '9'" in response.json()["error"]
    assert http.post("/v2/models/adder/versions/9/infer", json={"inputs": []}).status_code == 404


def test_tritonclient_raises_with_server_message(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("Z", [1], "INT32")
    tensor.set_data_from_numpy(np.array([1], dtype=np.int32))
    with pytest.raises(InferenceServerException, match="unknown input 'Z'"):
        client.infer("failing", [tensor])


def test_body_parsed_whatever_the_content_type(http: httpx.Client) -> None:
    body = b'{"id": "x1", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [[1, 2]]}]}'
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        response = http.post("/v2/models/adder/versions/1/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == "x1"
        assert response.json()["outputs"][0]["data"] == [2.0, 3.0]


def test_model_list(http: httpx.Client) -> None:
    models = http.get("/v2/models").json()["models"]
    assert {"adder", "text", "iris", "echo_bf16"} <= set(models)
    assert len(models) == len(set(models))


def test_async_predict(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("X", [3], "INT64")
    tensor.set_data_from_numpy(np.array([1, 2, 3], dtype=np.int64))
    np.testing.assert_array_equal(client.infer("async_adder", [tensor]).as_numpy("Y"), [2, 3, 4])


def test_hot_routes_are_matched_once_per_path_and_the_table_stays_bounded() -> None:
    from omi_adapters import rest

    rest._ROUTES.clear()
    assert rest._route("/v2/models/m/versions/2/infer") == ("infer", "m", "2")
    assert rest._route("/v2/models/m/versions/2/infer") == ("infer", "m", "2")  # from the table
    assert rest._route("/v2/models/m/metadata") is None and "/v2/models/m/metadata" not in rest._ROUTES
    long = "/v2/models/" + "x" * rest._CACHED_PATH + "/infer"
    assert rest._route(long) == ("infer", "x" * rest._CACHED_PATH, None) and long not in rest._ROUTES
    for i in range(3 * rest._MAX_ROUTES):  # a client sending ever new model names
        assert rest._route(f"/v2/models/m{i}/ready") == ("model_ready", f"m{i}", None)
    assert 0 < len(rest._ROUTES) <= rest._MAX_ROUTES
