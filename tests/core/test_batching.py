"""Dynamic batching in the core, in process: merge and split, who shares a call, failures and
deadlines inside batches. Over REST, gRPC and OMI: tests/serving/test_batching.py."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.batching import BatchPolicy, batch_key, groups, merge, split
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import ConfigurationError, DeadlineExceededError, PredictError
from omi_adapters.limits import Limits
from omi_adapters.types import InferenceRequest, InputTensor, RequestedOutput


def _doubler(calls: list[int], *, delay: float = 0.05, **options: object):
    @model(
        name="doubler",
        inputs=[Tensor("X", "FP32", [-1, -1])],
        outputs=[Tensor("Y", "FP32", [-1, -1]), Tensor("ROWS", "INT32", [-1])],
        max_batch_size=8,
        max_concurrency=1,
        **options,
    )
    def doubler(X: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(X))
        time.sleep(delay)
        if np.isnan(X).any():
            raise ValueError("a row holds NaN")
        return {"Y": X * 2, "ROWS": np.full(len(X), len(X), dtype=np.int32)}

    return doubler


def _request(x: np.ndarray, outputs: list[str] | None = None) -> InferenceRequest:
    return InferenceRequest(
        inputs=[InputTensor("X", "FP32", x.shape, x.astype(np.float32))],
        outputs=[RequestedOutput(o) for o in outputs] if outputs else None,
    )


def test_merge_and_split_keep_each_requests_rows() -> None:
    a, b = {"X": np.ones((2, 3))}, {"X": np.zeros((3, 3))}
    merged, sizes = merge([a, b])
    assert merged["X"].shape == (5, 3) and sizes == [2, 3]
    back = split({"Y": merged["X"] * 2}, sizes)
    assert [p["Y"].tolist() for p in back] == [(a["X"] * 2).tolist(), (b["X"] * 2).tolist()]
    alone, _ = merge([a])
    assert alone["X"] is a["X"]  # one request is not copied
    assert batch_key({"X": np.ones((2, 3))}) == batch_key({"X": np.ones((9, 3))}) != batch_key({"X": np.ones((2, 4))})


def test_groups_split_unmergeable_requests_and_bound_the_rows() -> None:
    items = [(i, {"X": np.ones((n, d))}) for i, (n, d) in enumerate([(3, 1), (2, 2), (4, 1), (2, 1), (1, 2)])]
    assert [[i for i, _ in g] for g in groups(items, 8)] == [[0, 2], [3], [1, 4]]


def test_the_policy_is_checked_and_cuts_to_preferred_sizes() -> None:
    policy = BatchPolicy(8, 0.0, (4, 2))
    assert [policy.cut(n) for n in (1, 3, 5, 8)] == [1, 2, 4, 4]
    with pytest.raises(ConfigurationError, match="preferred_batch_sizes must be integers from 1 to max_batch_size"):
        BatchPolicy(8, 0.0, (16,))
    with pytest.raises(ConfigurationError, match="need max_batch_size"):

        @model(name="m", inputs=[], outputs=[Tensor("Y", "FP32", [1])], max_queue_delay=0.1)
        def m() -> np.ndarray:
            return np.zeros(1)


def test_concurrent_requests_merge_and_each_gets_its_own_rows_and_outputs() -> None:
    calls: list[int] = []
    plane = DataPlane([_doubler(calls)])
    plane.start()
    served = plane.get("doubler")
    xs = [np.full((1 + i % 3, 2), i, dtype=np.float32) for i in range(10)]

    async def main() -> list:
        requests = [_request(x, ["Y"] if i % 2 else None) for i, x in enumerate(xs)]
        return await asyncio.gather(*(plane.run(served, r) for r in requests))

    responses = asyncio.run(main())
    for i, (x, response) in enumerate(zip(xs, responses)):
        outputs = {o.name: o.data for o in response.outputs}
        assert outputs["Y"].tolist() == (x * 2).tolist()
        assert set(outputs) == ({"Y"} if i % 2 else {"Y", "ROWS"})
    # The first ran alone (the model was idle); the rest queued behind it and merged.
    assert calls[0] == 1 and len(calls) < 10 and sum(calls) == sum(len(x) for x in xs)
    assert max(calls) <= 8
    plane.close()


def test_requests_that_cannot_merge_go_in_separate_batches() -> None:
    calls: list[int] = []
    plane = DataPlane([_doubler(calls)])
    plane.start()
    served = plane.get("doubler")
    xs = [np.ones((1, 3)), np.ones((2, 2)), np.ones((1, 2)), np.ones((1, 3)), np.ones((2, 2))]

    async def main() -> list:
        return await asyncio.gather(*(plane.run(served, _request(x)) for x in xs))

    responses = asyncio.run(main())
    assert [r.outputs[0].data.shape for r in responses] == [x.shape for x in xs]
    rows = [int(r.outputs[1].data[0]) for r in responses]
    assert rows == [1, 5, 5, 1, 5]  # the [*, 3] one queued behind ran alone; [*, 2] ones merged
    plane.close()


def test_a_failing_request_in_a_batch_fails_alone() -> None:
    calls: list[int] = []
    plane = DataPlane([_doubler(calls)])
    plane.start()
    served = plane.get("doubler")
    xs = [np.full((1, 2), np.nan if i == 3 else i, dtype=np.float32) for i in range(6)]

    async def main() -> list:
        return await asyncio.gather(*(plane.run(served, _request(x)) for x in xs), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[3], PredictError) and "a row holds NaN" in str(outcomes[3])
    for i, outcome in enumerate(outcomes):
        if i != 3:
            assert outcome.outputs[0].data.tolist() == [[2.0 * i, 2.0 * i]]
    plane.close()


def test_a_deadline_passes_in_the_queue() -> None:
    calls: list[int] = []
    plane = DataPlane([_doubler(calls, delay=0.5)], limits=Limits(request_timeout=5))
    plane.start()
    served = plane.get("doubler")

    async def main() -> None:
        busy = asyncio.create_task(plane.run(served, _request(np.ones((1, 1)))))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="the client's deadline"):
            await plane.run(served, _request(np.ones((1, 1))), timeout=0.1)
        assert time.monotonic() - started < 0.3
        assert (await busy).outputs[0].data.tolist() == [[2.0]]
        assert plane.batcher(served).queued == 0

    asyncio.run(main())
    assert calls == [1]  # the expired request never reached predict
    plane.close()


def test_a_queue_delay_fills_batches_while_the_model_is_idle() -> None:
    calls: list[int] = []
    plane = DataPlane([_doubler(calls, delay=0.0, max_queue_delay=0.05, preferred_batch_sizes=[4])])
    plane.start()
    served = plane.get("doubler")

    async def main() -> None:
        async def later(i: int) -> object:
            await asyncio.sleep(0.005 * i)
            return await plane.run(served, _request(np.ones((1, 2))))

        await asyncio.gather(*(later(i) for i in range(6)))

    asyncio.run(main())
    assert calls == [4, 2]  # held for the delay, then cut to the preferred size
    plane.close()


def test_items_submitted_together_merge_from_the_first() -> None:
    calls: list[int] = []
    plane = DataPlane([_doubler(calls, delay=0.0)])
    plane.start()
    served = plane.get("doubler")

    async def main() -> list:
        return await plane.run_items(served, [_request(np.full((1, 2), i)) for i in range(10)])

    outcomes = asyncio.run(main())
    assert [o.outputs[0].data.tolist() for o in outcomes] == [[[2.0 * i] * 2] for i in range(10)]
    assert calls == [8, 2]
    plane.close()
