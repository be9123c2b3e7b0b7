"""End to end: a real tritonserver serves the repository `omi build triton` wrote, driven by
tritonclient.http here and tritonclient.grpc in a separate process (its `inference` protobuf
messages clash with omi-adapters' own in one process, both register the ``inference`` protobuf package)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from tritonclient import http
from tritonclient.utils import InferenceServerException

from omi_adapters.codecs.tensors import bf16_to_float32, float32_to_bf16
from omi_adapters.dataplane import DataPlane
from omi_adapters.targets import load_target
from omi_adapters.types import InferenceRequest, InputTensor
from tests.servers import serve
from tests.triton.conftest import EXAMPLES, HERE

NUMPY = {"BF16": ml_dtypes.bfloat16}

# On a clean checkout the first test here also installs tritonserver (a 55 MB wheel and a
# model environment, 0.5 to 2 minutes here): allow for it on top of the tests' own seconds.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def client(triton: Any) -> Iterator[http.InferenceServerClient]:
    client = http.InferenceServerClient(triton.http_url, network_timeout=60)
    yield client
    client.close()


def _model(target: str) -> Any:
    return load_target(target)[0]


def _omi_answer(model: Any, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What `omi serve` answers for these inputs: the same core, through its DataPlane."""
    specs = {t.name: t for t in model.inputs}
    inputs = [InputTensor(name, specs[name].datatype, value.shape, value) for name, value in arrays.items()]
    plane = DataPlane([model])
    plane.start()
    response = asyncio.run(plane.infer(model.name, None, InferenceRequest(inputs=inputs)))
    return _as_sent(model, {out.name: out.data for out in response.outputs})


def _as_sent(model: Any, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # On the wire BF16 is rounded to bfloat16 (README, "Datatypes"): compare what is sent.
    bf16 = {t.name for t in model.outputs if t.datatype == "BF16"}
    return {k: bf16_to_float32(float32_to_bf16(v)) if k in bf16 else v for k, v in outputs.items()}


def _triton_shape(spec: Any, batching: bool) -> list[int]:
    # Tensors that are only a batch are [N, 1] on Triton (the reshape idiom, see omi_triton.config).
    return list(spec.shape) + [1] if batching and len(spec.shape) == 1 else list(spec.shape)


def _infer(
    client: http.InferenceServerClient, model: Any, arrays: dict[str, np.ndarray], *, triton: bool = True
) -> dict[str, np.ndarray]:
    """Infer through tritonclient.http; ``triton`` says the server is Triton (batch-only tensors [N, 1])."""
    reshaped = triton and bool(model.max_batch_size)
    specs = {t.name: t for t in model.inputs}
    inputs = []
    for name, value in arrays.items():
        spec = specs[name]
        wire = value.reshape(value.shape + (1,)) if reshaped and value.ndim == 1 else value
        if spec.datatype in NUMPY:
            wire = wire.astype(NUMPY[spec.datatype])
        tensor = http.InferInput(name, list(wire.shape), spec.datatype)
        tensor.set_data_from_numpy(wire, binary_data=True)
        inputs.append(tensor)
    result = client.infer(model.name, inputs)
    answers = {}
    for spec in model.outputs:
        value = result.as_numpy(spec.name)
        assert result.get_output(spec.name)["datatype"] == spec.datatype
        if reshaped and len(spec.shape) == 1:
            assert value.shape[1:] == (1,)
            value = value.reshape(value.shape[0])
        answers[spec.name] = value.astype(np.float32) if spec.datatype == "BF16" else value
    return answers


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        assert got[name].tolist() == value.tolist(), name


CASES = [
    (f"{EXAMPLES / 'adder.py'}:adder", {"X": np.arange(6, dtype=np.float32).reshape(2, 3) / 7}),
    (
        f"{EXAMPLES / 'text.py'}:text",
        {"TEXT": np.array([b"hello triton world", "ünïcode".encode(), b""], dtype=object)},
    ),
    (
        f"{EXAMPLES / 'iris' / 'model.py'}:Iris",
        {"features": np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])},
    ),
    (
        f"{HERE / 'models.py'}:kinds",
        {
            "FLAGS": np.array([True, False, True]),
            "HALF": np.array([1.5, -2.25, 1000], dtype=np.float16),
            "BRAIN": np.array([1.0, 3.140625, -2.0e-3], dtype=ml_dtypes.bfloat16).astype(np.float32),
            "WORDS": np.array([b"abc", b"\x00\xff\x01", b""], dtype=object),
            "SMALL": np.array([-128, 0, 127], dtype=np.int8),
            "BIG": np.array([2**64 - 2, 0, 12345678901234567890], dtype=np.uint64),
        },
    ),
]


@pytest.fixture(scope="module")
def omi_serve() -> Iterator[http.InferenceServerClient]:
    """A real `omi serve` (REST) of the same models, to compare answers with."""
    targets = [target.partition(":")[0] for target, _ in CASES]
    with serve(*dict.fromkeys(targets), protocols=("rest",)) as served:
        served.wait_ready()
        client = http.InferenceServerClient(served.http_url, network_timeout=60)
        yield client
        client.close()


@pytest.mark.parametrize(("target", "arrays"), CASES, ids=["adder", "text", "iris", "kinds"])
def test_answers_equal_omi_serve_and_predict(
    client: http.InferenceServerClient,
    omi_serve: http.InferenceServerClient,
    target: str,
    arrays: dict[str, np.ndarray],
) -> None:
    model = _model(target)
    got = _infer(client, model, arrays)
    _assert_same(got, _infer(omi_serve, model, arrays, triton=False))
    _assert_same(got, _omi_answer(model, arrays))
    # ... which are the predict function's own results, converted to the declared outputs.
    direct = model.check_outputs(model.wait_ready()(**arrays))
    _assert_same(got, _as_sent(model, direct))


def test_bf16_is_rounded_to_nearest_even(client: http.InferenceServerClient) -> None:
    model = _model(f"{HERE / 'models.py'}:kinds")
    arrays = dict(CASES[3][1])
    got = _infer(client, model, arrays)["BRAIN_THIRD"]
    want = (arrays["BRAIN"] / 3).astype(ml_dtypes.bfloat16).astype(np.float32)  # ml_dtypes rounds to nearest even
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("target", [CASES[0][0], CASES[1][0], CASES[2][0]], ids=["adder", "text", "iris"])
def test_metadata_matches_the_contract(client: http.InferenceServerClient, target: str) -> None:
    model = _model(target)
    metadata = client.get_model_metadata(model.name)
    assert metadata["name"] == model.name and metadata["versions"] == [model.version]
    batching = bool(model.max_batch_size)
    for side, specs in (("inputs", model.inputs), ("outputs", model.outputs)):
        assert [(t["name"], t["datatype"], t["shape"]) for t in metadata[side]] == [
            (s.name, s.datatype, _triton_shape(s, batching)) for s in specs
        ]
    config = client.get_model_config(model.name)
    assert config["backend"] == "python" and config["max_batch_size"] == model.max_batch_size
    assert ("dynamic_batching" in config) == batching


def test_lazy_class_loads_once_on_first_request(client: http.InferenceServerClient, triton: Any) -> None:
    model = _model(f"{HERE / 'models.py'}:LazyCounter")
    asked_at = time.time()
    first = _infer(client, model, {"X": np.array([1], dtype=np.int32)})
    second = _infer(client, model, {"X": np.array([2], dtype=np.int32)})
    assert first["LOADS"].tolist() == second["LOADS"].tolist() == [1]
    assert first["PID"].tolist() == second["PID"].tolist()
    # Loaded by the first request (no test asks this model before), not when Triton started.
    assert first["LOADED_AT"][0] >= asked_at > triton.ready_at


def test_bad_requests_get_errors_and_the_server_keeps_serving(client: http.InferenceServerClient) -> None:
    picky = _model(f"{HERE / 'models.py'}:picky")
    with pytest.raises(InferenceServerException) as raised:
        _infer(client, picky, {"X": np.array([4.0, -1.0])})
    assert raised.value.status() == "400" and "X must not be negative" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        _infer(client, picky, {"X": np.array([np.nan])})
    assert raised.value.status() == "500" and "ZeroDivisionError: nan is not a number" in raised.value.message()
    iris = _model(CASES[2][0])
    with pytest.raises(InferenceServerException) as raised:
        _infer(client, iris, {"features": np.ones((2, 3))})
    assert raised.value.status() == "400" and "features" in raised.value.message()
    assert client.is_server_live() and client.is_model_ready("picky")
    assert _infer(client, picky, {"X": np.array([9.0])})["Y"].tolist() == [3.0]


@pytest.mark.parametrize(
    ("name", "raised"), [("exits", "SystemExit: the model called sys.exit"), ("interrupted", "KeyboardInterrupt")]
)
def test_a_predict_raising_base_exception_fails_its_request_and_triton_serves_on(
    client: http.InferenceServerClient, name: str, raised: str
) -> None:
    model = _model(f"{HERE / 'models.py'}:{name}")
    for _ in range(2):  # the model instance (its stub process) is still there for the second
        with pytest.raises(InferenceServerException) as failed:
            _infer(client, model, {"X": np.array([1.0], dtype=np.float32)})
        assert failed.value.status() == "500" and f"model '{name}' failed: {raised}" in failed.value.message()
    assert client.is_server_live() and client.is_model_ready(name)
    assert _infer(client, _model(CASES[0][0]), {"X": np.ones((1, 1), dtype=np.float32)})["Y"].tolist() == [[2.0]]


def test_two_versions_of_one_model_are_served(client: http.InferenceServerClient) -> None:
    x = np.array([1.0, 2.0], dtype=np.float32)
    answers = {}
    for version in ("1", "2"):
        tensor = http.InferInput("X", [2], "FP32")
        tensor.set_data_from_numpy(x)
        answers[version] = client.infer("versioned", [tensor], model_version=version).as_numpy("Y").tolist()
        assert client.is_model_ready("versioned", version)
    assert answers == {"1": [2.0, 3.0], "2": [10.0, 20.0]}
    assert client.get_model_metadata("versioned")["versions"] == ["1", "2"]


def test_a_failed_eager_load_is_reported_and_the_others_serve(client: http.InferenceServerClient) -> None:
    assert client.is_server_live() and not client.is_server_ready()
    assert not client.is_model_ready("broken")
    index = {entry["name"]: entry for entry in client.get_model_repository_index()}
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert (
        "model 'broken' failed to load: FileNotFoundError: the weights are missing" in index["broken"]["reason"]
        and "weights are missing" in index["broken"]["reason"]
    )
    assert all(index[name]["state"] == "READY" for name in index if name != "broken")


def test_a_failed_lazy_load_answers_every_request_with_the_reason(client: http.InferenceServerClient) -> None:
    model = _model(f"{HERE / 'broken.py'}:BrokenLazy")
    for _ in range(2):  # the failure is kept, not retried behind the user's back
        with pytest.raises(InferenceServerException) as raised:
            _infer(client, model, {"X": np.array([1.0], dtype=np.float32)})
        assert raised.value.status() == "503"
        assert "model 'broken_lazy' failed to load: OSError: the disk is gone" in raised.value.message()
    assert client.is_server_live()


def test_only_requested_outputs_are_sent(client: http.InferenceServerClient) -> None:
    tensor = http.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"two words"]], dtype=object))
    result = client.infer("text", [tensor], outputs=[http.InferRequestedOutput("WORDS")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["WORDS"]
    assert result.as_numpy("WORDS").tolist() == [[2]]


def test_batching_merges_concurrent_requests(triton: Any) -> None:
    model = _model(f"{HERE / 'models.py'}:batcher")

    def one(i: int) -> dict[str, np.ndarray]:
        own = http.InferenceServerClient(triton.http_url, network_timeout=60)
        try:
            return _infer(own, model, {"X": np.array([[i, -i]] * (1 + i % 2), dtype=np.float32)})
        finally:
            own.close()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:  # each thread its own client: not thread-safe
        answers = list(pool.map(one, range(6)))
    for i, answer in enumerate(answers):
        assert answer["Y"].tolist() == [[2.0 * i, -2.0 * i]] * (1 + i % 2)  # split back to its request
    sizes = [int(a["BATCH"][0]) for a in answers]
    # Six requests (9 rows) in fewer predict calls: some call saw rows of several requests.
    assert max(sizes) > 2, sizes


def test_a_bad_request_in_a_merged_batch_fails_alone(triton: Any) -> None:
    model = _model(f"{HERE / 'models.py'}:batcher")

    def one(i: int) -> Any:
        own = http.InferenceServerClient(triton.http_url, network_timeout=60)
        try:
            return _infer(own, model, {"X": np.array([[np.nan if i == 3 else i, 0]], dtype=np.float32)})
        except InferenceServerException as exc:
            return exc
        finally:
            own.close()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        first = pool.submit(one, 0)
        time.sleep(0.1)  # the others queue behind the first call; Triton hands them over together
        answers = [first.result(), *pool.map(one, range(1, 6))]
    bad = answers.pop(3)
    assert isinstance(bad, InferenceServerException) and bad.status() == "500"
    assert "ValueError: a row holds NaN" in bad.message()
    assert [a["Y"].tolist() for a in answers] == [[[2.0 * i, 0.0]] for i in (0, 1, 2, 4, 5)]


def test_grpc_client(triton: Any) -> None:
    out = subprocess.run(
        [sys.executable, str(HERE / "grpc_driver.py"), triton.grpc_url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["live"] and report["ready"]
    assert report["adder_metadata"] == {"inputs": [["X", "FP32", [-1, -1]]], "outputs": [["Y", "FP32", [-1, -1]]]}
    assert report["adder"] == [[1.5, 2.5], [3.5, 4.5]]
    assert report["text"] == {"UPPER": [["HELLO GRPC"], ["B"]], "WORDS": [[2], [1]]}
    assert report["kinds"]["REVERSED"] == ["cba", ""] and report["kinds"]["NOT_FLAGS"] == [False, True]
    assert report["kinds"]["BRAIN_THIRD"] == [0.333984375, -0.66796875]
    assert report["bad"]["code"] == "StatusCode.INVALID_ARGUMENT" and "must not be negative" in report["bad"]["message"]
    assert report["after_bad"] == [2.0]


def _group_is_gone(pgid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_an_interrupted_start_takes_the_server_and_its_stubs_down(
    triton_install: Any, triton_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omi_triton.server import TritonServer

    server = TritonServer(triton_install, triton_repo)
    pids: list[int] = []

    def interrupted(what: str) -> bool:
        assert server.process is not None
        pids.append(server.process.pid)
        raise KeyboardInterrupt  # Ctrl-C while start() waits for the server

    monkeypatch.setattr(server, "_health", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert server.process is None
    assert _group_is_gone(pids[0])
