"""Streaming predicts in the core: how the decorator knows them, the DataPlane's stream of
responses (each yield checked, the generator closed and its slot freed whenever the reader
stops, the deadline, a bounded buffer ahead of a slow reader), the joined response of the
one-reply front ends, and the generate extension's JSON and server-sent events codecs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.codecs import generate_json, sse
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import ConfigurationError, DeadlineExceededError, InvalidInputError, PredictError
from omi_adapters.limits import Limits
from omi_adapters.streaming import STREAM_BUFFER
from omi_adapters.types import InferenceRequest, InferenceResponse, InputTensor, OutputTensor

N = [Tensor("N", "INT32", [1])]
TOKEN = [Tensor("TOKEN", "INT32", [1])]


def _request(n: int) -> InferenceRequest:
    return InferenceRequest(inputs=[InputTensor("N", "INT32", (1,), np.array([n], dtype=np.int32))], id="r")


def _counting(name: str, closed: list[str], **options: Any) -> Any:
    @model(name=name, inputs=N, outputs=TOKEN, **options)
    def count(N: np.ndarray) -> Iterator[np.ndarray]:
        try:
            for i in range(int(N[0])):
                yield np.array([i], dtype=np.int32)
        finally:
            closed.append(threading.current_thread().name)

    return count


def _async_counting(name: str, closed: list[str]) -> Any:
    @model(name=name, inputs=N, outputs=TOKEN)
    async def count(N: np.ndarray) -> AsyncIterator[np.ndarray]:
        try:
            for i in range(int(N[0])):
                await asyncio.sleep(0)
                yield np.array([i], dtype=np.int32)
        finally:
            closed.append("async")

    return count


async def _all(plane: DataPlane, m: Any, request: InferenceRequest) -> list[InferenceResponse]:
    return [r async for r in plane.responses(m, request)]


# --- the contract --------------------------------------------------------------------------------


def test_the_decorator_knows_a_generator_from_the_function() -> None:
    closed: list[str] = []
    sync, asynchronous = _counting("s", closed), _async_counting("a", closed)
    assert (sync.streaming, sync.is_async) == (True, False)
    assert (asynchronous.streaming, asynchronous.is_async) == (True, True)

    @model(inputs=N, outputs=TOKEN)
    class Counter:
        def predict(self, N: np.ndarray) -> Iterator[np.ndarray]:
            yield N

    @model(inputs=N, outputs=TOKEN)
    def plain(N: np.ndarray) -> np.ndarray:
        return N

    assert Counter.streaming and not plain.streaming
    assert sync.contract()["stream"] is True and plain.contract()["stream"] is False


def test_stream_true_declares_a_predict_that_returns_an_iterator() -> None:
    @model(inputs=N, outputs=TOKEN, stream=True)
    def wrapped(N: np.ndarray) -> Iterator[np.ndarray]:
        return iter([N, N + 1])

    @model(inputs=N, outputs=TOKEN, stream=True)
    def lying(N: np.ndarray) -> np.ndarray:
        return N

    plane = DataPlane([wrapped, lying])
    plane.start()
    got = asyncio.run(_all(plane, wrapped, _request(5)))
    assert [int(r.outputs[0].data[0]) for r in got] == [5, 6]
    with pytest.raises(
        PredictError, match="streams, so predict must return an iterator or async iterator, got ndarray"
    ):
        asyncio.run(_all(plane, lying, _request(5)))


def test_a_generator_cannot_say_stream_false_nor_batch() -> None:
    with pytest.raises(ConfigurationError, match="a generator predict always streams; drop stream=False"):

        @model(inputs=N, outputs=TOKEN, stream=False)
        def gen(N: np.ndarray) -> Iterator[np.ndarray]:
            yield N

    with pytest.raises(ConfigurationError, match=r"streams \(its predict is a generator\), so it cannot batch"):

        @model(inputs=[Tensor("N", "INT32", [-1])], outputs=[Tensor("T", "INT32", [-1])], max_batch_size=8)
        def batched(N: np.ndarray) -> Iterator[np.ndarray]:
            yield N


def test_omi_inspect_shows_a_streaming_model(examples: Any) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "omi_adapters.cli", "inspect", str(examples / "markov" / "model.py")],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (contract,) = json.loads(out)
    assert contract["name"] == "markov" and contract["stream"] is True and contract["async"] is False


# --- the DataPlane's stream ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["thread", "loop", "async"])
def test_each_yield_is_a_response_and_a_reader_that_stops_closes_the_generator(kind: str) -> None:
    closed: list[str] = []
    if kind == "async":
        m = _async_counting("c", closed)
    else:
        m = _counting("c", closed, run_in_thread=kind == "thread")
    plane = DataPlane([m])
    plane.start()
    got = asyncio.run(_all(plane, m, _request(4)))
    assert [int(r.outputs[0].data[0]) for r in got] == [0, 1, 2, 3]
    assert {(r.model_name, r.id) for r in got} == {("c", "r")}

    async def stop_after_two() -> list[int]:
        stream = plane.responses(m, _request(1000))
        seen = [int((await anext(stream)).outputs[0].data[0]) for _ in range(2)]
        await stream.aclose()
        for _ in range(100):  # a thread-run generator closes at its next yield, in its thread
            if len(closed) == 2 and plane.gate(m).running == 0:
                break
            await asyncio.sleep(0.01)
        return seen

    assert asyncio.run(stop_after_two()) == [0, 1]
    assert len(closed) == 2 and plane.gate(m).running == 0  # the finally block ran; the slot is free
    if kind == "thread":
        assert closed[1].startswith("omi-predict-c")  # closed in the model's own thread


def test_a_cancelled_reader_closes_the_generator() -> None:
    closed: list[str] = []
    m = _async_counting("c", closed)
    plane = DataPlane([m])
    plane.start()

    async def main() -> None:
        async def read() -> None:
            async for _ in plane.responses(m, _request(10**9)):
                await asyncio.sleep(0)

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert closed == ["async"] and plane.gate(m).running == 0


def test_a_yield_is_checked_against_the_outputs() -> None:
    @model(inputs=N, outputs=TOKEN)
    def bad(N: np.ndarray) -> Iterator[Any]:
        yield np.array([1], dtype=np.int32)
        yield {"OTHER": N}

    plane = DataPlane([bad])
    plane.start()

    async def main() -> list[Any]:
        got: list[Any] = []
        try:
            async for response in plane.responses(bad, _request(1)):
                got.append(int(response.outputs[0].data[0]))
        except PredictError as exc:
            got.append(str(exc))
        return got

    assert asyncio.run(main()) == [1, "model 'bad' returned no output 'TOKEN'"]


def test_a_stream_holds_its_slot_until_it_ends() -> None:
    closed: list[str] = []
    m = _counting("one", closed, max_concurrency=1, max_queue=0)
    plane = DataPlane([m])
    plane.start()

    async def main() -> None:
        first = plane.responses(m, _request(100))
        await anext(first)
        with pytest.raises(Exception, match="queue limit"):  # the one slot is the open stream's
            await anext(plane.responses(m, _request(1)))
        await first.aclose()
        for _ in range(100):
            if plane.gate(m).running == 0:
                break
            await asyncio.sleep(0.01)
        assert len(await _all(plane, m, _request(3))) == 3

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["thread", "async"])
def test_a_stream_past_its_deadline_fails_and_closes(kind: str) -> None:
    closed: list[str] = []

    if kind == "async":

        @model(name="slow", inputs=N, outputs=TOKEN)
        async def slow(N: np.ndarray) -> AsyncIterator[np.ndarray]:
            try:
                while True:
                    yield N
                    await asyncio.sleep(0.05)
            finally:
                closed.append("closed")

    else:

        @model(name="slow", inputs=N, outputs=TOKEN)
        def slow(N: np.ndarray) -> Iterator[np.ndarray]:
            try:
                while True:
                    yield N
                    time.sleep(0.05)
            finally:
                closed.append("closed")

    plane = DataPlane([slow])
    plane.start()

    async def main() -> int:
        count = 0
        with pytest.raises(DeadlineExceededError, match=r"did not answer within the client's deadline \(0.3s\)"):
            async for _ in plane.responses(slow, _request(1), timeout=0.3):
                count += 1
        for _ in range(100):
            if closed and plane.gate(slow).running == 0:
                break
            await asyncio.sleep(0.01)
        return count

    assert 2 <= asyncio.run(main()) <= 10
    assert closed == ["closed"] and plane.gate(slow).running == 0


def test_a_thread_run_generator_waits_for_a_slow_reader() -> None:
    produced: list[int] = []

    @model(inputs=N, outputs=TOKEN)
    def fast(N: np.ndarray) -> Iterator[np.ndarray]:
        for i in range(10**6):
            produced.append(i)
            yield np.array([i], dtype=np.int32)

    plane = DataPlane([fast])
    plane.start()

    async def main() -> None:
        stream = plane.responses(fast, _request(1))
        await anext(stream)
        await asyncio.sleep(0.3)  # read nothing meanwhile
        assert len(produced) <= STREAM_BUFFER + 2
        await stream.aclose()

    asyncio.run(main())


def test_a_one_reply_front_end_gets_the_yields_joined() -> None:
    closed: list[str] = []
    m = _counting("c", closed)

    @model(name="none", inputs=N, outputs=[Tensor("T", "FP32", [-1, 2])])
    def nothing(N: np.ndarray) -> Iterator[np.ndarray]:
        yield from ()

    @model(name="ragged", inputs=N, outputs=[Tensor("T", "FP32", [-1, -1])])
    def ragged(N: np.ndarray) -> Iterator[np.ndarray]:
        yield np.zeros((1, 2), dtype=np.float32)
        yield np.zeros((1, 3), dtype=np.float32)

    plane = DataPlane([m, nothing, ragged])
    plane.start()
    joined = asyncio.run(plane.run(m, _request(5)))
    assert joined.id == "r" and joined.outputs[0].shape == (5,)
    np.testing.assert_array_equal(joined.outputs[0].data, [0, 1, 2, 3, 4])
    empty = asyncio.run(plane.run(nothing, _request(1)))
    assert empty.outputs[0].shape == (0, 2) and empty.outputs[0].data.dtype == np.float32
    with pytest.raises(PredictError, match="cannot be joined into one response"):
        asyncio.run(plane.run(ragged, _request(1)))


def test_joined_yields_are_bounded_by_the_in_flight_bytes() -> None:
    @model(name="big", inputs=N, outputs=[Tensor("T", "UINT8", [-1])])
    def big(N: np.ndarray) -> Iterator[np.ndarray]:
        while True:
            yield np.zeros(1000, dtype=np.uint8)

    plane = DataPlane([big], limits=Limits(max_inflight_bytes=10_000))
    plane.start()
    with pytest.raises(InvalidInputError, match=r"pass 10000 bytes.*ask for the stream"):
        asyncio.run(plane.run(big, _request(1)))


# --- codecs --------------------------------------------------------------------------------------

INPUTS = [
    Tensor("text_input", "BYTES", [1]),
    Tensor("max_tokens", "INT32", [1], optional=True),
    Tensor("matrix", "FP32", [-1, 2], optional=True),
    Tensor("row", "INT64", [1, -1], optional=True),
]


def test_generate_request_keys_that_name_inputs_are_inputs_the_rest_parameters() -> None:
    body = json.dumps(
        {
            "id": "g",
            "text_input": "héllo",
            "max_tokens": 5,
            "matrix": [[1, 2], [3, 4]],
            "row": [1, 2, 3],
            "temperature": 0.5,
            "parameters": {"stream": True},
        }
    ).encode()
    request = generate_json.decode_request(body, INPUTS)
    assert request.id == "g" and request.parameters == {"temperature": 0.5, "stream": True}
    by_name = {t.name: t for t in request.inputs}
    assert by_name["text_input"].shape == (1,) and by_name["text_input"].data[0] == "héllo".encode()
    assert by_name["max_tokens"].shape == (1,) and by_name["max_tokens"].data.dtype == np.int32
    assert by_name["matrix"].shape == (2, 2) and by_name["matrix"].data.dtype == np.float32
    assert by_name["row"].shape == (1, 3)  # a flat list laid out in the declared [1, -1]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[]", "a generate request must be a JSON object, got a list"),
        (b"{", "request body is not valid JSON"),
        (b'{"id": 5}', "'id' must be a string"),
        (b'{"parameters": []}', "'parameters' must be an object"),
        (b'{"top_k": {"a": 1}}', "'top_k' is not an input of this model, so it is a parameter"),
        (b'{"max_tokens": "five"}', "input 'max_tokens': INT32 data must be integers"),
        (b'{"matrix": [[1, 2], [3]]}', "ragged"),
    ],
)
def test_a_bad_generate_request_names_its_problem(body: bytes, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        generate_json.decode_request(body, INPUTS)


def test_generate_response_is_flat_with_one_value_per_one_element_output() -> None:
    response = InferenceResponse(
        "m", "2",
        [
            OutputTensor("text_output", "BYTES", (1,), np.array([b"hi"], dtype=object)),
            OutputTensor("scores", "FP32", (2,), np.array([0.5, 1.5], dtype=np.float32)),
            OutputTensor("count", "INT64", (1, 1), np.array([[7]])),
        ],
        id="x",
    )  # fmt: skip
    assert json.loads(generate_json.encode_response(response)) == {
        "model_name": "m", "model_version": "2", "id": "x", "text_output": "hi", "scores": [0.5, 1.5], "count": 7,
    }  # fmt: skip
    binary = InferenceResponse("m", "1", [OutputTensor("b", "BYTES", (1,), np.array([b"\xff"], dtype=object))])
    with pytest.raises(PredictError, match="not UTF-8 text"):
        generate_json.encode_response(binary)


def test_an_event_is_one_data_line() -> None:
    assert sse.event(b'{"a":"x\\ny"}') == b'data: {"a":"x\\ny"}\n\n'
    assert sse.error_event("it broke") == b'data: {"error":"it broke"}\n\n'
