"""The same request gives the same outputs over REST JSON, REST binary, gRPC raw and gRPC typed."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.servers import Served

FEATURES = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def _rest(server: Served, binary: bool) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("features", list(FEATURES.shape), "FP64")
    tensor.set_data_from_numpy(FEATURES, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "label")]
    result = client.infer("iris", [tensor], outputs=outputs)
    labels = [x.encode() if isinstance(x, str) else x for x in result.as_numpy("label")]
    return {"probabilities": result.as_numpy("probabilities"), "label": np.array(labels, dtype=object)}


def _grpc(server: Served) -> dict[str, np.ndarray]:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("features", list(FEATURES.shape), "FP64")
        tensor.set_data_from_numpy(FEATURES)
        result = client.infer("iris", [tensor])
        return {"probabilities": result.as_numpy("probabilities"), "label": result.as_numpy("label")}


@pytest.mark.timeout(120)
def test_rest_json_rest_binary_and_grpc_agree(server: Served) -> None:
    json_out, binary_out, grpc_out = _rest(server, False), _rest(server, True), _grpc(server)
    for other in (binary_out, grpc_out):
        np.testing.assert_array_equal(json_out["probabilities"], other["probabilities"])
        assert list(json_out["label"]) == list(other["label"])
    assert json_out["probabilities"].dtype == np.float32
    assert list(grpc_out["label"]) == [b"setosa", b"virginica", b"versicolor"]
