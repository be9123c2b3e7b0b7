"""Unload and reload in the core (Triton's model repository extension): states, readiness, refusals."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import InvalidInputError, ModelLoadError, ModelUnloadedError
from omi_adapters.loading import LoadState
from omi_adapters.repository import index, load, unload
from omi_adapters.types import InferenceRequest, InputTensor


def _models() -> tuple[Model, Model]:
    attempts: list[str] = []

    @model(name="counted", inputs=[Tensor("X", "INT32", [-1])], outputs=[Tensor("Y", "INT32", [-1])])
    class Counted:
        def load(self) -> None:
            attempts.append("load")
            if len(attempts) == 3:
                raise OSError("disk gone")
            self.n = len(attempts)

        def predict(self, X: np.ndarray) -> np.ndarray:
            return X * self.n

    @model(name="lazy", load="lazy", inputs=[Tensor("X", "INT32", [-1])], outputs=[Tensor("Y", "INT32", [-1])])
    def lazy(X: np.ndarray) -> np.ndarray:
        return X

    return Counted, lazy


def _infer(plane: DataPlane, name: str) -> list[int]:
    x = np.array([1, 2], np.int32)
    response = asyncio.run(plane.infer(name, None, InferenceRequest(inputs=[InputTensor("X", "INT32", x.shape, x)])))
    return list(response.outputs[0].data.tolist())


def test_unload_refuses_requests_until_load_and_a_failed_reload_keeps_the_loaded_model() -> None:
    counted, lazy = _models()
    plane = DataPlane([counted, lazy], model_control=True)
    plane.start()
    assert _infer(plane, "counted") == [1, 2]

    asyncio.run(unload(plane, "counted"))
    assert counted.state is LoadState.UNLOADED and counted.unloaded
    assert plane.model_ready(counted) is False
    with pytest.raises(ModelUnloadedError, match="model 'counted' is unloaded"):
        _infer(plane, "counted")
    with pytest.raises(ModelUnloadedError):
        plane.model_metadata("counted")
    assert {"name": "counted", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"} in index(plane)

    asyncio.run(load(plane, "counted"))  # the second load
    assert _infer(plane, "counted") == [2, 4]
    with pytest.raises(ModelLoadError, match="failed to reload: OSError: disk gone; the loaded model serves on"):
        asyncio.run(load(plane, "counted"))  # the third fails
    assert counted.state is LoadState.READY and _infer(plane, "counted") == [2, 4]
    asyncio.run(load(plane, "counted"))
    assert _infer(plane, "counted") == [4, 8]
    assert counted.load_count == 3  # the failed reload is not a load


def test_an_unloaded_lazy_model_is_not_loaded_by_readiness_and_the_server_counts_models_in_service() -> None:
    counted, lazy = _models()
    plane = DataPlane([counted, lazy], model_control=True)
    plane.start()
    assert [e["state"] for e in index(plane)] == ["READY", "UNAVAILABLE"]
    assert index(plane, ready=True) == [{"name": "counted", "version": "1", "state": "READY"}]
    asyncio.run(unload(plane, "lazy"))
    assert plane.model_ready(lazy) is False
    assert lazy.state is LoadState.UNLOADED  # asking readiness started no load
    assert plane.ready() is True  # the unloaded model does not count
    asyncio.run(load(plane, "lazy"))
    assert lazy.ready and plane.ready()


def test_load_and_unload_are_refused_unless_model_control_is_on() -> None:
    counted, lazy = _models()
    plane = DataPlane([counted, lazy])
    plane.start()
    for call in (load, unload):
        with pytest.raises(InvalidInputError, match="--model-control-mode none"):
            asyncio.run(call(plane, "counted"))
    assert plane.model_ready(counted) and _infer(plane, "counted") == [1, 2]
    assert counted.load_count == 1
    assert [e["state"] for e in index(plane)] == ["READY", "UNAVAILABLE"]  # the index is always served
