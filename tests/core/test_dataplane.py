"""Where DataPlane runs predict: sync ones in the model's own threads (or on the loop when it asks),
async ones on the loop; and the thread hand-off that carries results and errors back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.dataplane import DataPlane, in_thread
from omi_adapters.errors import ConfigurationError, PredictError
from omi_adapters.types import InferenceRequest, InputTensor


def _where_model(name: str, **options: object):
    @model(name=name, inputs=[Tensor("X", "INT32", [1])], outputs=[Tensor("THREAD", "BYTES", [1])], **options)
    def where(X: np.ndarray) -> np.ndarray:
        return np.array([threading.current_thread().name.encode()], dtype=object)

    return where


def _thread_of(dataplane: DataPlane, name: str) -> str:
    request = InferenceRequest(inputs=[InputTensor("X", "INT32", (1,), np.array([1], dtype=np.int32))])

    async def main() -> tuple[str, str]:
        response = await dataplane.infer(name, None, request)
        return response.outputs[0].data[0].decode(), threading.current_thread().name

    ran_on, loop_thread = asyncio.run(main())
    return "loop" if ran_on == loop_thread else ran_on


def test_sync_predict_runs_in_the_pool_and_on_the_loop_only_when_asked() -> None:
    plane = DataPlane([_where_model("threaded"), _where_model("inline", run_in_thread=False)])
    plane.start()
    assert _thread_of(plane, "threaded").startswith("omi-predict")
    assert _thread_of(plane, "inline") == "loop"
    assert plane.get("inline").contract()["run_in_thread"] is False
    assert plane.get("threaded").contract()["run_in_thread"] is True


def test_each_model_has_its_own_predict_threads() -> None:
    plane = DataPlane([_where_model("first"), _where_model("second")])
    plane.start()
    assert _thread_of(plane, "first").startswith("omi-predict-first")
    assert _thread_of(plane, "second").startswith("omi-predict-second")
    plane.close()


def test_run_in_thread_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="run_in_thread must be True or False"):
        _where_model("bad", run_in_thread="no")


def test_an_inline_predict_that_raises_is_a_predict_error() -> None:
    @model(name="boom", inputs=[Tensor("X", "INT32", [1])], outputs=[Tensor("Y", "INT32", [1])], run_in_thread=False)
    def boom(X: np.ndarray) -> np.ndarray:
        raise ValueError("no good")

    plane = DataPlane([boom])
    plane.start()
    request = InferenceRequest(inputs=[InputTensor("X", "INT32", (1,), np.array([1], dtype=np.int32))])
    with pytest.raises(PredictError, match="model 'boom' failed: ValueError: no good"):
        asyncio.run(plane.infer("boom", None, request))


def test_in_thread_returns_results_and_raises_errors_of_the_worker() -> None:
    executor = concurrent.futures.ThreadPoolExecutor(2)

    def fail() -> None:
        raise KeyError("missing")

    async def main() -> None:
        assert await in_thread(executor, pow, 2, 10) == 1024
        with pytest.raises(KeyError, match="missing"):
            await in_thread(executor, fail)
        results = await asyncio.gather(*(in_thread(executor, pow, n, 2) for n in range(50)))
        assert results == [n * n for n in range(50)]

    asyncio.run(main())
    executor.shutdown()


def test_in_thread_survives_a_waiter_that_was_cancelled() -> None:
    executor = concurrent.futures.ThreadPoolExecutor(1)
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(5)
        finished.set()
        return "late"

    async def main() -> None:
        task = asyncio.create_task(in_thread(executor, slow))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.to_thread(finished.wait, 5)
        await asyncio.sleep(0.05)  # the late result arrives on the loop and must be dropped quietly
        assert await in_thread(executor, str.upper, "next") == "NEXT"

    asyncio.run(main())
    executor.shutdown()
