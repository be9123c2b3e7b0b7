"""The core's bounds, in process: deadlines, per-model slots and queues, stalls, admission, and
user code that raises BaseException. The same behaviour over real servers is in tests/serving."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import (
    DeadlineExceededError,
    ModelLoadError,
    ModelStalledError,
    OverloadedError,
    PredictError,
)
from omi_adapters.limits import Admission, Deadline, Limits
from omi_adapters.types import InferenceRequest, InputTensor

IO = {"inputs": [Tensor("X", "INT32", [1])], "outputs": [Tensor("Y", "INT32", [1])]}


def _request(value: int = 1) -> InferenceRequest:
    return InferenceRequest(inputs=[InputTensor("X", "INT32", (1,), np.array([value], dtype=np.int32))])


def _hanging(name: str, release: threading.Event, **options: object):
    @model(name=name, **IO, **options)
    def hang(X: np.ndarray) -> np.ndarray:
        release.wait(30)
        return X

    return hang


def _quick(name: str = "quick"):
    @model(name=name, **IO)
    def quick(X: np.ndarray) -> np.ndarray:
        return X + 1

    return quick


def test_the_deadline_is_the_earliest_bound_and_names_it() -> None:
    deadline = Deadline.earliest((60.0, "the server's"), (None, "none"), (0.5, "the client's deadline (0.5s)"))
    assert 0.4 < deadline.remaining() <= 0.5
    assert str(deadline.exceeded("m")) == "model 'm' did not answer within the client's deadline (0.5s)"


def test_a_request_gets_the_smallest_of_server_model_and_client_deadlines() -> None:
    @model(name="m", **IO, timeouts={"run": "2s"})
    def m(X: np.ndarray) -> np.ndarray:
        return X

    plane = DataPlane([m], limits=Limits(request_timeout=5))
    model_ = plane.get("m")
    assert plane.deadline(model_).reason == "its run timeout (2s)"
    assert plane.deadline(model_, 0.25).reason == "the client's deadline (0.25s)"
    assert DataPlane([m], limits=Limits(request_timeout=1)).deadline(model_).reason == (
        "the server's request timeout (1s)"
    )


def test_hung_sync_predicts_answer_at_the_deadline_then_stall_only_their_model() -> None:
    release = threading.Event()
    plane = DataPlane(
        [_hanging("hung", release, max_concurrency=2), _quick()], limits=Limits(request_timeout=0.3, stall_timeout=0.5)
    )
    plane.start()
    hung, quick = plane.get("hung"), plane.get("quick")

    async def main() -> None:
        started = time.monotonic()
        first = await asyncio.gather(*(plane.run(hung, _request()) for _ in range(2)), return_exceptions=True)
        assert all(isinstance(e, DeadlineExceededError) for e in first), first
        assert str(first[0]) == "model 'hung' did not answer within the server's request timeout (0.3s)"
        assert time.monotonic() - started < 2
        # Both slots are held past their deadline: the next request is refused at once.
        started = time.monotonic()
        with pytest.raises(ModelStalledError, match="all 2 of its predict calls are running past their deadline"):
            await plane.run(hung, _request())
        assert time.monotonic() - started < 0.1
        assert not plane.model_ready(hung) and plane.model_ready(quick)
        assert plane.live()  # not stalled long enough yet
        # The other model keeps answering in time.
        assert (await plane.run(quick, _request(4))).outputs[0].data.tolist() == [5]
        await asyncio.sleep(0.6)
        assert not plane.live()
        release.set()
        for _ in range(100):
            if plane.gate(hung).running == 0:
                break
            await asyncio.sleep(0.02)
        assert plane.model_ready(hung) and plane.live()
        assert (await plane.run(hung, _request(7))).outputs[0].data.tolist() == [7]

    asyncio.run(main())
    plane.close()


def test_a_hung_async_predict_is_cancelled_at_the_deadline_and_frees_its_slot() -> None:
    cancelled = []

    @model(name="sleepy", **IO, max_concurrency=1)
    async def sleepy(X: np.ndarray) -> np.ndarray:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return X

    plane = DataPlane([sleepy], limits=Limits(request_timeout=0.2))
    plane.start()

    async def main() -> None:
        with pytest.raises(DeadlineExceededError, match="request timeout"):
            await plane.run(plane.get("sleepy"), _request())
        assert cancelled == [True]
        assert plane.gate(plane.get("sleepy")).running == 0
        with pytest.raises(DeadlineExceededError):  # the slot is free again: it runs, and times out
            await plane.run(plane.get("sleepy"), _request())

    asyncio.run(main())


def test_the_queue_is_bounded_and_a_deadline_can_pass_in_it() -> None:
    release = threading.Event()
    plane = DataPlane([_hanging("one", release, max_concurrency=1, max_queue=1)], limits=Limits(request_timeout=1))
    plane.start()
    one = plane.get("one")

    async def main() -> None:
        running = asyncio.create_task(plane.run(one, _request()))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(plane.run(one, _request()))
        await asyncio.sleep(0.05)
        assert plane.gate(one).queued == 1
        with pytest.raises(OverloadedError, match="queue limit") as refused:
            await plane.run(one, _request())
        assert refused.value.retry_after == 1.0
        # A queued request that gives up (a client that went away) leaves the queue at once.
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert plane.gate(one).queued == 0
        waiting = asyncio.create_task(plane.run(one, _request()))
        with pytest.raises(DeadlineExceededError):
            await waiting  # its deadline passes while it waits behind the running one
        with pytest.raises(DeadlineExceededError):
            await running
        release.set()

    asyncio.run(main())
    plane.close()


def test_a_freed_slot_goes_to_the_next_in_line() -> None:
    order: list[int] = []

    @model(name="serial", **IO, max_concurrency=1)
    def serial(X: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        order.append(int(X[0]))
        return X

    plane = DataPlane([serial])
    plane.start()

    async def main() -> list[int]:
        served = plane.get("serial")
        responses = await asyncio.gather(*(plane.run(served, _request(i)) for i in range(6)))
        return [int(r.outputs[0].data[0]) for r in responses]

    assert asyncio.run(main()) == list(range(6))
    assert order == list(range(6))
    plane.close()


def test_admission_bounds_requests_and_bytes() -> None:
    admission = Admission(max_requests=2, max_bytes=100)
    first = admission.enter(60)
    with pytest.raises(OverloadedError, match="--max-inflight-bytes"):
        admission.enter(50)
    second = admission.enter(40)
    with pytest.raises(OverloadedError, match="2 requests in flight"):
        admission.enter()
    with pytest.raises(OverloadedError, match="--max-inflight-bytes"):
        second.grow(1)
    first.close()
    first.close()  # idempotent
    assert (admission.requests, admission.nbytes) == (1, 40)
    second.grow(50)
    with second:
        pass
    assert (admission.requests, admission.nbytes) == (0, 0)
    with pytest.raises(OverloadedError, match="a request of 101 bytes is more than the server holds"):
        admission.enter(101)


@pytest.mark.parametrize("thrown", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
@pytest.mark.parametrize("where", ["thread", "loop", "async"])
def test_base_exceptions_from_predict_fail_the_request_only(thrown: BaseException, where: str) -> None:
    if where == "async":

        @model(name="bad", **IO)
        async def bad(X: np.ndarray) -> np.ndarray:
            raise thrown

    else:

        @model(name="bad", **IO, run_in_thread=where == "thread")
        def bad(X: np.ndarray) -> np.ndarray:
            raise thrown

    plane = DataPlane([bad, _quick()])
    plane.start()

    async def main() -> None:
        with pytest.raises(PredictError, match=f"model 'bad' failed: {type(thrown).__name__}"):
            await plane.infer("bad", None, _request())
        assert (await plane.infer("quick", None, _request())).outputs[0].data.tolist() == [2]

    asyncio.run(main())
    plane.close()


def test_a_loader_that_calls_sys_exit_is_a_failed_load() -> None:
    @model(name="exits", **IO)
    class Exits:
        def load(self) -> None:
            sys.exit("no weights")

        def predict(self, X: np.ndarray) -> np.ndarray:
            return X

    plane = DataPlane([Exits])
    plane.start()
    assert not plane.ready()
    with pytest.raises(ModelLoadError, match="failed to load: SystemExit: no weights"):
        asyncio.run(plane.infer("exits", None, _request()))


def test_limits_are_checked() -> None:
    with pytest.raises(Exception, match="every request has a deadline"):
        Limits(request_timeout=0)
    with pytest.raises(Exception, match="max_queue must be an integer"):
        Limits(max_queue=-1)
    with pytest.raises(Exception, match="max_concurrency must be an integer >= 1"):
        _hanging("x", threading.Event(), max_concurrency=0)
