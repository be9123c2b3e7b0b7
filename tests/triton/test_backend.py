"""TritonPythonModel without a server: a stand-in for Triton's ``triton_python_backend_utils``
makes the merging of batched requests and the per-request errors deterministic to check. The
real server proves the same against tritonserver (test_server.py)."""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from omi_triton import config as triton_config
from omi_triton.backend import TritonPythonModel
from omi_triton.build import write_model

from omi_adapters.errors import ConfigurationError
from omi_adapters.targets import MODULE_PREFIX, load_target


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def to_dlpack(self) -> np.ndarray:
        return self._array

    @classmethod
    def from_dlpack(cls, name: str, capsule: np.ndarray) -> FakeTensor:
        return cls(name, capsule)


class FakeError:
    INVALID_ARG, NOT_FOUND, UNAVAILABLE, INTERNAL = "INVALID_ARG", "NOT_FOUND", "UNAVAILABLE", "INTERNAL"

    def __init__(self, message: str, code: str) -> None:
        self.message, self.code = message, code


class FakeResponse:
    def __init__(self, output_tensors: list[FakeTensor], error: FakeError | None = None) -> None:
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error


class FakeRequest:
    def __init__(self, **arrays: np.ndarray) -> None:
        self._inputs = [FakeTensor(name, value) for name, value in arrays.items()]

    def inputs(self) -> list[FakeTensor]:
        return self._inputs


@pytest.fixture(autouse=True)
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor = FakeTensor  # type: ignore[attr-defined]
    fake.TritonError = FakeError  # type: ignore[attr-defined]
    fake.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    return fake


SOURCE = """
import numpy as np
from omi_adapters import Tensor, model

CALLS = []

@model(name="merge", inputs=[Tensor("X", "FP32", [-1, 2])], outputs=[Tensor("Y", "FP32", [-1, 2]), Tensor("N", "INT32", [-1])],
       max_batch_size=8)
def merge(X):
    CALLS.append(X.copy())
    if np.isnan(X).any():
        raise ValueError("NaN row")
    return {"Y": X * 10, "N": np.full(len(X), len(X), dtype=np.int32)}

@model(name="single", inputs=[Tensor("X", "INT64", [-1])], outputs=[Tensor("Y", "INT64", [-1])])
def single(X):
    CALLS.append(X.copy())
    return X + 1
"""


def _instance(tmp_path: Path, attr: str) -> tuple[TritonPythonModel, list[np.ndarray]]:
    source = tmp_path / "fake_backend_models.py"
    source.write_text(textwrap.dedent(SOURCE))
    model = load_target(f"{source}:{attr}")[0]
    folder = write_model(model, tmp_path / "repo")
    message = triton_config.parse((folder / "config.pbtxt").read_text())
    instance = TritonPythonModel()
    instance.initialize(
        {
            "model_config": json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True)),
            "model_repository": str(folder),
            "model_version": model.version,
        }
    )
    return instance, sys.modules[MODULE_PREFIX + "fake_backend_models"].CALLS


def test_requests_of_one_execute_merge_into_one_call(tmp_path: Path) -> None:
    instance, calls = _instance(tmp_path, "merge")
    rows = [np.array([[1, 2]], np.float32), np.array([[3, 4], [5, 6]], np.float32), np.array([[7, 8]], np.float32)]
    responses = instance.execute([FakeRequest(X=x) for x in rows])
    assert len(calls) == 1 and calls[0].tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    for x, response in zip(rows, responses):
        assert response.error is None
        assert response.outputs["Y"].tolist() == (x * 10).tolist() and response.outputs["N"].tolist() == [4] * len(x)


def test_an_invalid_request_is_answered_alone(tmp_path: Path) -> None:
    instance, calls = _instance(tmp_path, "merge")
    good, bad = np.array([[1, 2]], np.float32), np.array([[1, 2, 3]], np.float32)
    responses = instance.execute([FakeRequest(X=good), FakeRequest(X=bad), FakeRequest(X=good)])
    assert (
        responses[1].error.code == "INVALID_ARG"
        and "expected FP32 [-1, 2], got FP32 [1, 3]" in responses[1].error.message
    )
    assert [r.outputs["N"].tolist() for r in (responses[0], responses[2])] == [[2], [2]]
    assert len(calls) == 1


def test_a_failing_merged_call_is_retried_one_by_one(tmp_path: Path) -> None:
    instance, calls = _instance(tmp_path, "merge")
    xs = [np.array([[1, 2]], np.float32), np.array([[np.nan, 0]], np.float32), np.array([[3, 4]], np.float32)]
    responses = instance.execute([FakeRequest(X=x) for x in xs])
    assert len(calls) == 4  # the merged call, then one per request
    assert responses[1].error.code == "INTERNAL" and "ValueError: NaN row" in responses[1].error.message
    assert responses[0].outputs["Y"].tolist() == [[10, 20]] and responses[2].outputs["Y"].tolist() == [[30, 40]]
    assert responses[0].outputs["N"].tolist() == [1]


def test_without_batching_each_request_is_its_own_call(tmp_path: Path) -> None:
    instance, calls = _instance(tmp_path, "single")
    responses = instance.execute([FakeRequest(X=np.array([1, 2])), FakeRequest(X=np.array([5]))])
    assert [r.outputs["Y"].tolist() for r in responses] == [[2, 3], [6]]
    assert len(calls) == 2
    instance.finalize()
    assert instance.model is None


def test_a_config_with_a_smaller_max_batch_size_is_served(tmp_path: Path) -> None:
    _instance(tmp_path, "merge")  # builds the repository
    message = triton_config.parse((tmp_path / "repo" / "merge" / "config.pbtxt").read_text())
    config = json_format.MessageToDict(message, preserving_proto_field_name=True)
    instance = TritonPythonModel()
    instance.initialize({
        "model_config": json.dumps(dict(config, max_batch_size=2)),
        "model_repository": str(tmp_path / "repo" / "merge"),
        "model_version": "1",
    })  # fmt: skip
    assert instance.execute([FakeRequest(X=np.ones((1, 2), np.float32))])[0].error is None
    with pytest.raises(ConfigurationError, match="does not match the model's code"):
        TritonPythonModel().initialize({
            "model_config": json.dumps(dict(config, max_batch_size=16)),
            "model_repository": str(tmp_path / "repo" / "merge"),
            "model_version": "1",
        })  # fmt: skip


def test_every_error_code_has_a_triton_code() -> None:
    from omi_triton.errors import TRITON_CODES

    from omi_adapters.errors import ErrorCode

    assert set(TRITON_CODES) == set(ErrorCode)
    assert set(TRITON_CODES.values()) <= {"INVALID_ARG", "NOT_FOUND", "UNAVAILABLE", "INTERNAL"}


def test_a_config_without_target_or_with_another_contract_is_refused(tmp_path: Path) -> None:
    _instance(tmp_path, "single")  # builds the repository
    message = triton_config.parse((tmp_path / "repo" / "single" / "config.pbtxt").read_text())
    config = json_format.MessageToDict(message, preserving_proto_field_name=True)
    args = {"model_repository": str(tmp_path / "repo" / "single"), "model_version": "1"}
    stale = dict(config, input=[{"name": "X", "data_type": "TYPE_INT32", "dims": ["-1"]}])
    with pytest.raises(ConfigurationError, match="does not match the model's code"):
        TritonPythonModel().initialize({**args, "model_config": json.dumps(stale)})
    for key, value in [("max_batch_size", 4), ("output", [{"name": "Y", "data_type": "TYPE_INT64", "dims": ["3"]}])]:
        with pytest.raises(ConfigurationError, match="does not match the model's code"):
            TritonPythonModel().initialize({**args, "model_config": json.dumps(dict(config, **{key: value}))})
    untargeted = {k: v for k, v in config.items() if k != "parameters"}
    with pytest.raises(ConfigurationError, match="has no 'omi_target' parameter"):
        TritonPythonModel().initialize({**args, "model_config": json.dumps(untargeted)})


STREAMING = """
import numpy as np
from omi_adapters import Tensor, model

CLOSED = []

@model(name="tokens", inputs=[Tensor("N", "INT32", [1])], outputs=[Tensor("T", "INT32", [1])])
def tokens(N):
    try:
        for i in range(int(N[0])):
            if i == 3 and int(N[0]) == 99:
                raise ValueError("broke at three")
            yield np.array([i], dtype=np.int32)
    finally:
        CLOSED.append(int(N[0]))

@model(name="async_tokens", inputs=[Tensor("N", "INT32", [1])], outputs=[Tensor("T", "INT32", [1])])
async def async_tokens(N):
    try:
        for i in range(int(N[0])):
            yield np.array([i], dtype=np.int32)
    finally:
        CLOSED.append(-int(N[0]))
"""

FINAL = 1


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[FakeResponse | None, int]] = []

    def send(self, response: FakeResponse | None = None, flags: int = 0) -> None:
        self.sent.append((response, flags))


class FakeStreamRequest(FakeRequest):
    def __init__(self, cancel_after: int | None = None, **arrays: np.ndarray) -> None:
        super().__init__(**arrays)
        self.sender = FakeSender()
        self._cancel_after = cancel_after

    def get_response_sender(self) -> FakeSender:
        return self.sender

    def is_cancelled(self) -> bool:
        return self._cancel_after is not None and len(self.sender.sent) >= self._cancel_after


def _streaming(tmp_path: Path, attr: str, pb_utils: types.ModuleType) -> tuple[TritonPythonModel, list[int], dict]:
    pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL  # type: ignore[attr-defined]
    source = tmp_path / "fake_streaming_models.py"
    source.write_text(textwrap.dedent(STREAMING))
    model = load_target(f"{source}:{attr}")[0]
    folder = write_model(model, tmp_path / "repo")
    message = triton_config.parse((folder / "config.pbtxt").read_text())
    config = json_format.MessageToDict(message, preserving_proto_field_name=True)
    instance = TritonPythonModel()
    args = {"model_repository": str(folder), "model_version": model.version}
    instance.initialize({**args, "model_config": json.dumps(config)})
    return instance, sys.modules[MODULE_PREFIX + "fake_streaming_models"].CLOSED, {"config": config, "args": args}


@pytest.mark.parametrize("attr", ["tokens", "async_tokens"])
def test_a_streaming_model_sends_each_yield_then_the_final_flag(
    tmp_path: Path, pb_utils: types.ModuleType, attr: str
) -> None:
    instance, closed, built = _streaming(tmp_path, attr, pb_utils)
    assert built["config"]["model_transaction_policy"] == {"decoupled": True}
    request = FakeStreamRequest(N=np.array([3], dtype=np.int32))
    assert instance.execute([request]) is None  # a decoupled model answers through its sender
    sent = request.sender.sent
    assert [(r.outputs["T"].tolist() if r else None, flags) for r, flags in sent] == [
        ([0], 0), ([1], 0), ([2], 0), (None, FINAL)
    ]  # fmt: skip
    assert closed == [3 if attr == "tokens" else -3]
    instance.finalize()  # closes an async model's loop


def test_a_streaming_error_is_the_last_response_flagged_final(tmp_path: Path, pb_utils: types.ModuleType) -> None:
    instance, _, _ = _streaming(tmp_path, "tokens", pb_utils)
    request = FakeStreamRequest(N=np.array([99], dtype=np.int32))
    instance.execute([request])
    *tokens, (last, flags) = request.sender.sent
    assert [r.outputs["T"].tolist() for r, _ in tokens] == [[0], [1], [2]]
    assert flags == FINAL and last is not None and "broke at three" in last.error.message
    bad = FakeStreamRequest(N=np.array([1, 2], dtype=np.int32))
    instance.execute([bad])
    ((answer, flags),) = bad.sender.sent
    assert flags == FINAL and "expected INT32 [1]" in answer.error.message


def test_a_cancelled_streaming_request_closes_its_generator(tmp_path: Path, pb_utils: types.ModuleType) -> None:
    instance, closed, _ = _streaming(tmp_path, "tokens", pb_utils)
    request = FakeStreamRequest(cancel_after=2, N=np.array([1000], dtype=np.int32))
    instance.execute([request])
    assert len(request.sender.sent) == 3 and request.sender.sent[-1] == (None, FINAL)
    assert closed == [1000]  # the generator's finally ran


def test_a_config_that_disagrees_on_decoupled_is_refused(tmp_path: Path, pb_utils: types.ModuleType) -> None:
    _, _, built = _streaming(tmp_path, "tokens", pb_utils)
    coupled = {k: v for k, v in built["config"].items() if k != "model_transaction_policy"}
    with pytest.raises(ConfigurationError, match="does not match the model's code"):
        TritonPythonModel().initialize({**built["args"], "model_config": json.dumps(coupled)})
