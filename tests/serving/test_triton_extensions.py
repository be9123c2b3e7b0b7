"""Triton's model configuration, model repository and classification extensions, driven with
tritonclient over HTTP and gRPC against a real ``omi serve``; the configuration compared with the
``config.pbtxt`` that ``omi build triton`` writes for the same models, and the new messages of
``protos/`` with Triton's own (in separate processes: both register the ``inference`` package).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from omi_triton import config as triton_config
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import EXAMPLES, ROOT
from tests.servers import Served, serve

pytestmark = pytest.mark.timeout(180)

MODELS = "tests/serving/extension_models.py"
TARGETS = (EXAMPLES / "adder.py", "tests/serving/models.py:adder_v2", "tests/serving/batch_models.py:doubler", MODELS)
TOKEN = "s3cret-token"
#: Load and unload are served only with this flag.
CONTROL = ("--model-control-mode", "explicit")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    flag = tmp_path_factory.mktemp("flaky") / "loaded-once"
    flag.write_text("")  # here the flaky model loads at once
    with serve(*TARGETS, protocols=("rest", "grpc"), args=CONTROL, env={"OMI_TEST_FLAKY_FLAG": str(flag)}) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture
def clients(served: Served) -> Iterator[tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient]]:
    http = httpclient.InferenceServerClient(served.http_url)
    rpc = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        yield http, rpc
    finally:
        http.close()
        rpc.close()


def triton_json(message: Any) -> dict[str, Any]:
    """A ``ModelConfig`` message in the JSON form Triton's HTTP endpoint answers: every field without
    presence, and its 64-bit fields as numbers (tests/triton/test_extensions.py compares with tritonserver)."""
    config = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for tensor in (*config.get("input", ()), *config.get("output", ())):
        tensor["dims"] = [int(d) for d in tensor["dims"]]
        if "reshape" in tensor:
            tensor["reshape"]["shape"] = [int(d) for d in tensor["reshape"]["shape"]]
    specific = config.get("version_policy", {}).get("specific")
    if specific is not None:
        specific["versions"] = [int(v) for v in specific["versions"]]
    batching = config.get("dynamic_batching")
    if batching is not None:
        for field in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
            batching[field] = int(batching[field])
    return config


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    subprocess.run(
        [sys.executable, "-m", "omi_adapters.cli", "build", "triton", *map(str, TARGETS), "--out", str(repo)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return repo


# --- model configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adder", "doubler", "scores", "batched_scores"])
def test_get_model_config_over_http_and_grpc_is_what_omi_build_triton_writes(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient], built: Path, name: str
) -> None:
    http, rpc = clients
    written = triton_config.parse((built / name / "config.pbtxt").read_text())

    assert http.get_model_config(name) == triton_json(written)
    reply = rpc.get_model_config(name)
    assert json_format.MessageToDict(reply.config) == json_format.MessageToDict(written)
    assert reply.config.SerializeToString(deterministic=True) == written.SerializeToString(deterministic=True)


def test_the_configuration_carries_versions_batching_and_labels(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient], built: Path
) -> None:
    http, rpc = clients
    adder = http.get_model_config("adder", "1")
    assert adder["version_policy"] == {"specific": {"versions": [1, 2]}}  # both served versions, one config
    assert adder["parameters"]["omi_target_1"] == {"string_value": "code/adder.py:adder"}
    assert adder["parameters"]["omi_target_2"] == {"string_value": "code/models.py:adder_v2"}
    assert (adder["input"][0]["dims"], adder["max_batch_size"]) == ([-1, -1], 0)
    doubler = rpc.get_model_config("doubler", as_json=True)["config"]
    assert doubler["max_batch_size"] == 8 and "dynamic_batching" in doubler
    labelled = http.get_model_config("scores")["output"]
    assert [o["label_filename"] for o in labelled] == ["LABELLED.labels.txt", ""]
    assert (built / "scores" / "LABELLED.labels.txt").read_text() == "cat\ndog\nbird\n"


def test_the_configuration_of_an_unknown_model_or_version_is_not_found(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient],
) -> None:
    http, rpc = clients
    with pytest.raises(InferenceServerException, match="unknown model 'nobody'"):
        http.get_model_config("nobody")
    with pytest.raises(InferenceServerException) as info:
        rpc.get_model_config("adder", "7")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "has no version '7'" in str(info.value.message())


# --- readiness and server metadata ---------------------------------------------------------------


def test_an_unknown_model_is_not_ready_on_http_and_grpc(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient],
) -> None:
    http, rpc = clients
    assert http.is_model_ready("nobody") is False
    assert rpc.is_model_ready("nobody") is False  # ready=false, as Triton answers, not NOT_FOUND
    assert rpc.is_model_ready("adder", "7") is False
    assert http.is_model_ready("adder") is True and rpc.is_model_ready("adder") is True


def test_server_metadata_lists_the_extensions(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient],
) -> None:
    http, rpc = clients
    expected = {"binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics"}
    assert set(http.get_server_metadata()["extensions"]) == expected
    assert set(rpc.get_server_metadata().extensions) == expected


# --- model repository ----------------------------------------------------------------------------


def _index_http(http: httpclient.InferenceServerClient) -> dict[tuple[str, str], dict[str, str]]:
    return {(e["name"], e["version"]): e for e in http.get_model_repository_index()}


def _index_grpc(rpc: grpcclient.InferenceServerClient) -> dict[tuple[str, str], tuple[str, str]]:
    return {(m.name, m.version): (m.state, m.reason) for m in rpc.get_model_repository_index().models}


def test_load_retries_a_model_whose_first_load_failed(tmp_path: Path) -> None:
    flag = tmp_path / "loaded-once"
    with serve(MODELS, protocols=("rest", "grpc"), args=CONTROL, env={"OMI_TEST_FLAKY_FLAG": str(flag)}) as srv:
        http = httpclient.InferenceServerClient(srv.http_url)
        rpc = grpcclient.InferenceServerClient(srv.grpc_url)
        try:
            assert flag.exists()  # the first load ran, and failed
            failed = "load failed: RuntimeError: the weights are not there yet"
            assert _index_http(http)["flaky", "1"] == {
                "name": "flaky", "version": "1", "state": "UNAVAILABLE", "reason": failed
            }  # fmt: skip
            assert _index_grpc(rpc)["flaky", "1"] == ("UNAVAILABLE", failed)
            assert (http.is_model_ready("flaky"), http.is_server_ready(), rpc.is_server_ready()) == (False,) * 3
            tensor = httpclient.InferInput("X", [2], "INT32")
            tensor.set_data_from_numpy(np.array([4, 5], dtype=np.int32))
            with pytest.raises(InferenceServerException, match="failed to load: RuntimeError"):
                http.infer("flaky", [tensor])

            rpc.load_model("flaky")

            assert (http.is_model_ready("flaky"), rpc.is_model_ready("flaky")) == (True, True)
            assert (http.is_server_ready(), rpc.is_server_ready()) == (True, True)
            assert http.infer("flaky", [tensor]).as_numpy("Y").tolist() == [4, 5]
            assert _index_grpc(rpc)["flaky", "1"] == ("READY", "")
            assert "reason" not in _index_http(http)["flaky", "1"]
            scrape = _scrape(srv)
        finally:
            http.close()
            rpc.close()
    # The model_state gauge follows, and both loads are counted.
    assert 'omi_model_state{model="flaky",state="READY",version="1"} 1.0' in scrape
    assert 'omi_model_load_failures_total{model="flaky",version="1"} 1.0' in scrape
    assert 'omi_model_load_duration_seconds_count{model="flaky",result="success",version="1"} 1.0' in scrape


def _scrape(served: Served) -> str:
    with urllib.request.urlopen(f"http://{served.http_url}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def test_unload_takes_a_model_out_of_service_and_load_brings_it_back(
    served: Served, clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient]
) -> None:
    http, rpc = clients
    x_http = httpclient.InferInput("X", [1, 2], "FP32")
    x_http.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))
    x_grpc = grpcclient.InferInput("X", [1, 2], "FP32")
    x_grpc.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))

    http.unload_model("adder")
    try:
        assert http.is_model_ready("adder") is False and rpc.is_model_ready("adder", "2") is False
        with pytest.raises(InferenceServerException, match="model 'adder' is unloaded") as info:
            http.infer("adder", [x_http])
        assert info.value.status() == "404"
        with pytest.raises(InferenceServerException, match="model 'adder' is unloaded") as info:
            rpc.infer("adder", [x_grpc], model_version="1")
        assert info.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException, match="is unloaded"):
            http.get_model_metadata("adder")
        with pytest.raises(InferenceServerException, match="is unloaded"):
            rpc.get_model_config("adder")
        index = _index_grpc(rpc)
        assert index["adder", "1"] == index["adder", "2"] == ("UNAVAILABLE", "unloaded")
        # The server stays ready: it counts the models in service, as Triton does.
        assert http.is_server_ready() is True and rpc.is_server_ready() is True
        assert http.infer("scores", [_scores_input()]).as_numpy("PLAIN") is not None
        unloaded = _scrape(served)
    finally:
        rpc.load_model("adder")
    assert 'omi_model_state{model="adder",state="UNLOADED",version="1"} 1.0' in unloaded
    assert 'omi_model_state{model="adder",state="READY",version="2"} 0.0' in unloaded
    assert 'omi_model_state{model="adder",state="READY",version="2"} 1.0' in _scrape(served)

    assert http.is_model_ready("adder") is True and rpc.is_model_ready("adder", "2") is True
    assert http.infer("adder", [x_http], model_version="1").as_numpy("Y").tolist() == [[2, 3]]
    assert rpc.infer("adder", [x_grpc], model_version="2").as_numpy("Y").tolist() == [[3, 4]]
    assert _index_http(http)["adder", "2"]["state"] == "READY"


def _ready_index(served: Served) -> tuple[set[str], set[str]]:
    """The names the index lists with ``ready`` set, over gRPC and over HTTP (which tritonclient cannot ask)."""
    with grpc.insecure_channel(served.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        over_grpc = {m.name for m in stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True)).models}
    request = urllib.request.Request(f"http://{served.http_url}/v2/repository/index", b'{"ready": true}')
    with urllib.request.urlopen(request, timeout=10) as reply:
        over_http = {e["name"] for e in json.loads(reply.read())}
    return over_grpc, over_http


def test_load_reloads_a_ready_model_and_the_index_can_list_only_ready_ones(
    served: Served, clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient]
) -> None:
    http, rpc = clients
    http.load_model("scores")  # a reload: it serves on
    assert http.is_model_ready("scores") is True
    assert http.infer("scores", [_scores_input()]).as_numpy("PLAIN").tolist() == [1, 7, 2]
    before = _ready_index(served)
    rpc.unload_model("doubler")
    try:
        during = _ready_index(served)
    finally:
        rpc.load_model("doubler")
    assert all("doubler" in names for names in before)
    assert all("doubler" not in names and "scores" in names for names in during)
    assert _ready_index(served) == before


def test_repository_calls_of_an_unknown_model_or_with_unsupported_parameters_are_refused(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient],
) -> None:
    http, rpc = clients
    with pytest.raises(InferenceServerException, match="unknown model 'nobody'") as info:
        http.load_model("nobody")
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException) as info:
        rpc.unload_model("nobody")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="load parameter 'config' is not supported") as info:
        http.load_model("scores", config=json.dumps({"max_batch_size": 4}))
    assert info.value.status() == "400"
    with pytest.raises(InferenceServerException, match="load parameter 'config' is not supported"):
        rpc.load_model("scores", config=json.dumps({"max_batch_size": 4}))
    assert http.is_model_ready("scores") is True


# --- classification ------------------------------------------------------------------------------


def _scores_input() -> httpclient.InferInput:
    tensor = httpclient.InferInput("X", [3], "FP32")
    tensor.set_data_from_numpy(np.array([0.1, 0.7, 0.2], dtype=np.float32))
    return tensor


@pytest.mark.parametrize("binary", [False, True])
def test_classification_over_http_with_and_without_labels(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient], binary: bool
) -> None:
    http, _ = clients
    outputs = [
        httpclient.InferRequestedOutput("LABELLED", binary_data=binary, class_count=2),
        httpclient.InferRequestedOutput("PLAIN", binary_data=binary, class_count=5),
    ]
    result = http.infer("scores", [_scores_input()], outputs=outputs)
    # tritonclient gives JSON strings as str, binary ones as bytes.
    texts = {
        name: [v.decode() if binary else v for v in result.as_numpy(name).tolist()] for name in ("LABELLED", "PLAIN")
    }
    assert texts["LABELLED"] == ["0.700000:1:dog", "0.200000:2:bird"]
    assert texts["PLAIN"] == ["7:1", "2:2", "1:0"]  # k past the classes: all of them
    assert result.get_output("LABELLED")["datatype"] == "BYTES"
    assert result.get_output("PLAIN")["shape"] == [3]


def test_classification_over_grpc_of_a_batch_is_batch_by_k(
    clients: tuple[httpclient.InferenceServerClient, grpcclient.InferenceServerClient],
) -> None:
    _, rpc = clients
    tensor = grpcclient.InferInput("X", [2, 3], "FP32")
    tensor.set_data_from_numpy(np.array([[0.1, 0.7, 0.2], [0.5, 0.0, 0.5]], dtype=np.float32))
    result = rpc.infer("batched_scores", [tensor], outputs=[grpcclient.InferRequestedOutput("Y", class_count=2)])
    y = result.as_numpy("Y")
    assert y.shape == (2, 2)
    # Each row on its own; equal values in index order.
    assert y.tolist() == [[b"0.700000:1:dog", b"0.200000:2:bird"], [b"0.500000:0:cat", b"0.500000:2:bird"]]

    plain = grpcclient.InferInput("X", [3], "FP32")
    plain.set_data_from_numpy(np.array([3, 1, 2], dtype=np.float32))
    unlabelled = rpc.infer("scores", [plain], outputs=[grpcclient.InferRequestedOutput("PLAIN", class_count=1)])
    assert unlabelled.as_numpy("PLAIN").tolist() == [b"30:0"]
    assert [o.name for o in unlabelled.get_response().outputs] == ["PLAIN"]
    with pytest.raises(InferenceServerException, match="classification must be an integer >= 1") as info:
        rpc.infer("scores", [plain], outputs=[grpcclient.InferRequestedOutput("PLAIN", class_count=-1)])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_a_classification_count_that_is_not_a_positive_integer_is_a_clear_400(served: Served) -> None:
    body = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}],
        "outputs": [{"name": "LABELLED", "parameters": {"classification": "two"}}],
    }
    request = urllib.request.Request(f"http://{served.http_url}/v2/models/scores/infer", json.dumps(body).encode())
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert json.loads(info.value.read()) == {
        "error": "output 'LABELLED': classification must be an integer >= 1, got 'two'"
    }


# --- access control ------------------------------------------------------------------------------


def test_repository_control_needs_the_token_and_readiness_does_not(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    args = ("--auth-token-file", str(token), *CONTROL)
    with serve(EXAMPLES / "adder.py", protocols=("rest", "grpc"), args=args) as srv:
        srv.wait_ready()
        bearer = {"authorization": f"Bearer {TOKEN}"}
        http = httpclient.InferenceServerClient(srv.http_url)
        rpc = grpcclient.InferenceServerClient(srv.grpc_url)
        try:
            with pytest.raises(InferenceServerException) as refused:
                http.unload_model("adder")
            with pytest.raises(InferenceServerException) as refused_grpc:
                rpc.unload_model("adder")
            with pytest.raises(InferenceServerException):
                http.get_model_repository_index()
            with pytest.raises(InferenceServerException):
                rpc.get_model_config("adder")
            still_ready = http.is_model_ready("adder")
            http.unload_model("adder", headers=bearer)
            unloaded = rpc.is_model_ready("adder")
            rpc.load_model("adder", headers=bearer)
            back = rpc.is_model_ready("adder")
            config = rpc.get_model_config("adder", headers=bearer).config
        finally:
            http.close()
            rpc.close()
    assert refused.value.status() == "401"
    assert refused_grpc.value.status() == "StatusCode.UNAUTHENTICATED"
    assert (still_ready, unloaded, back) == (True, False, True)
    assert config.name == "adder"


def test_without_model_control_load_and_unload_are_refused_as_triton_refuses_them() -> None:
    with serve(EXAMPLES / "adder.py", protocols=("rest", "grpc")) as srv:
        srv.wait_ready()
        http = httpclient.InferenceServerClient(srv.http_url)
        rpc = grpcclient.InferenceServerClient(srv.grpc_url)
        try:
            refusals = []
            for call in (http.unload_model, http.load_model, rpc.unload_model, rpc.load_model):
                with pytest.raises(InferenceServerException) as info:
                    call("adder")
                refusals.append((info.value.status(), info.value.message()))
            ready = (http.is_model_ready("adder"), rpc.is_model_ready("adder"))
            states = {m["state"] for m in http.get_model_repository_index()}
        finally:
            http.close()
            rpc.close()
    assert [status for status, _ in refusals] == ["400", "400", *["StatusCode.INVALID_ARGUMENT"] * 2]
    assert all("--model-control-mode none" in message for _, message in refusals)
    assert ready == (True, True) and states == {"READY"}


# --- the messages are Triton's -------------------------------------------------------------------

MESSAGES = (
    "ModelConfigRequest", "ModelConfigResponse", "ModelRepositoryParameter", "RepositoryIndexRequest",
    "RepositoryIndexResponse", "RepositoryModelLoadRequest", "RepositoryModelLoadResponse",
    "RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse",
)  # fmt: skip
METHODS = ("ModelConfig", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")

_DUMP = """
import json, sys
from google.protobuf import descriptor_pb2, json_format
if sys.argv[1] == "ours":
    from omi_adapters.protos import open_inference_grpc_pb2 as module, model_config_pb2 as config
else:
    from tritonclient.grpc import service_pb2 as module, model_config_pb2 as config
names, methods = json.loads(sys.argv[2]), json.loads(sys.argv[3])
file = descriptor_pb2.FileDescriptorProto()
module.DESCRIPTOR.CopyToProto(file)
config_file = descriptor_pb2.FileDescriptorProto()
config.DESCRIPTOR.CopyToProto(config_file)
print(json.dumps({
    "package": file.package,
    "messages": {m.name: json_format.MessageToDict(m) for m in file.message_type if m.name in names},
    "methods": [json_format.MessageToDict(m) for s in file.service for m in s.method if m.name in methods],
    "model_config": config_file.SerializeToString().hex(),
}, sort_keys=True))
"""


def test_the_configuration_and_repository_messages_and_rpcs_are_tritons() -> None:
    def dump(which: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", _DUMP, which, json.dumps(MESSAGES), json.dumps(METHODS)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    ours, tritons = dump("ours"), dump("triton")
    assert set(ours["messages"]) == set(MESSAGES)
    assert len(ours["methods"]) == len(METHODS)
    # protos/model_config.proto is Triton's own file: the same descriptor as tritonclient's.
    assert ours == tritons
