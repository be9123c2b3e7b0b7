"""Streaming end to end: a real ``omi serve`` of generator models, read as server-sent events
by a plain HTTP client (httpx and :mod:`tests.sse`), with curl, and as Triton's gRPC stream by
``tritonclient`` (``start_stream`` / ``async_stream_infer``).

The server needs a bearer token, as every stream must; its request timeout is 4 s, which the
endless models run into.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from omi_adapters.targets import load_target
from tests.conftest import EXAMPLES
from tests.servers import Served, serve
from tests.sse import events

pytestmark = pytest.mark.timeout(120)

TOKEN = "omi-stream-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GRPC_AUTH = {"authorization": f"Bearer {TOKEN}"}
MARKOV = EXAMPLES / "markov" / "model.py"


@pytest.fixture(scope="module")
def marks() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="omi-stream-marks-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def server(marks: Path) -> Iterator[Served]:
    targets = (MARKOV, "tests/serving/stream_models.py", EXAMPLES / "adder.py")
    env = {"STREAM_MARKS": str(marks), "OMI_AUTH_TOKEN": TOKEN}
    with serve(*targets, env=env, args=("--request-timeout", "4")) as served:
        served.wait_ready()
        yield served


@pytest.fixture(scope="module")
def expected() -> Any:
    """The Markov example's tokens, computed here without any server."""
    markov = load_target(str(MARKOV))[0]
    predict = markov.wait_ready()

    def tokens(prompt: str, count: int, seed: int = 0) -> list[str]:
        arrays = {
            "text_input": np.array([prompt.encode()], dtype=object),
            "max_tokens": np.array([count], dtype=np.int32),
            "seed": np.array([seed], dtype=np.int64),
        }
        return [bytes(t[0]).decode() for t in predict(**arrays)]

    return tokens


def _url(server: Served, model: str, action: str) -> str:
    return f"http://{server.http_url}/v2/models/{model}/{action}"


def _sse(server: Served, model: str, body: dict[str, Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """POST to generate_stream; the status, content type and the parsed events."""
    with httpx.stream("POST", _url(server, model, "generate_stream"), json=body, headers=AUTH, timeout=30) as reply:
        found = [json.loads(data) for data in events(reply.iter_lines())]
        return reply.status_code, reply.headers["content-type"], found


def _wait_for(path: Path, line: str, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if line in lines:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"{path.name}: no {line!r} within {timeout}s (saw {lines})")


# --- REST: generate_stream ----------------------------------------------------------------------


def test_generate_stream_sends_one_event_per_token_in_tritons_shape(server: Served, expected: Any) -> None:
    status, content_type, found = _sse(
        server, "markov", {"id": "req-7", "text_input": "The miller", "max_tokens": 50, "seed": 3}
    )
    assert status == 200 and content_type == "text/event-stream; charset=utf-8"
    want = expected("The miller", 50, 3)
    assert len(want) == 50 and len(set(want)) > 5  # the chain makes text, not one repeated character
    assert [e["text_output"] for e in found] == want
    assert all(e.keys() == {"model_name", "model_version", "id", "text_output"} for e in found)
    assert {(e["model_name"], e["model_version"], e["id"]) for e in found} == {("markov", "1", "req-7")}


def test_generate_stream_of_a_versioned_path_and_defaults(server: Served, expected: Any) -> None:
    url = f"http://{server.http_url}/v2/models/markov/versions/1/generate_stream"
    with httpx.stream("POST", url, json={"text_input": "The river"}, headers=AUTH, timeout=30) as reply:
        found = [json.loads(d) for d in events(reply.iter_lines())]
    assert [e["text_output"] for e in found] == expected("The river", 64)  # max_tokens and seed left out
    assert all("id" not in e for e in found)


def test_an_error_mid_stream_is_an_error_event_after_the_tokens(server: Served) -> None:
    status, _, found = _sse(server, "fails_midway", {"tag": "m"})
    assert status == 200  # sent with the first event, before the failure
    assert found[:2] == [
        {"model_name": "fails_midway", "model_version": "1", "text_output": "t0"},
        {"model_name": "fails_midway", "model_version": "1", "text_output": "t1"},
    ]
    assert len(found) == 3 and "the chain broke after two tokens" in found[2]["error"]
    assert "Traceback" not in found[2]["error"]


def test_a_yield_that_breaks_the_contract_ends_the_stream_with_its_error(server: Served) -> None:
    status, _, found = _sse(server, "wrong_yield", {"tag": "w"})
    assert status == 200 and found[0]["text_output"] == "t0"
    assert found[1] == {"error": "output 'text_output': expected BYTES [1], got object [2]"}


@pytest.mark.parametrize(
    ("model", "body", "status", "says"),
    [
        ("markov", {"text_input": "x", "max_tokens": 20000}, 400, "max_tokens must be between 0 and 10000"),
        ("markov", {"max_tokens": 3}, 400, "missing input 'text_input'"),
        ("markov", {"text_input": "x", "temperature": [1, 2]}, 400, "'temperature' is not an input"),
        ("markov", {"text_input": 5}, 400, "BYTES elements must be strings"),
        ("nobody", {"text_input": "x"}, 404, "unknown model 'nobody'"),
    ],
)
def test_an_error_before_the_first_event_is_a_json_error_with_its_status(
    server: Served, model: str, body: dict[str, Any], status: int, says: str
) -> None:
    reply = httpx.post(_url(server, model, "generate_stream"), json=body, headers=AUTH, timeout=30)
    assert reply.status_code == status and reply.headers["content-type"] == "application/json"
    assert says in reply.json()["error"]


def test_generate_stream_of_a_plain_model_is_one_event(server: Served) -> None:
    status, _, found = _sse(server, "adder", {"X": [[1, 2.5]], "temperature": 0.5})
    assert status == 200
    assert found == [{"model_name": "adder", "model_version": "1", "Y": [2.0, 3.5]}]


def test_a_stream_past_the_request_timeout_ends_with_a_deadline_event_and_closes(server: Served, marks: Path) -> None:
    began = time.monotonic()
    status, _, found = _sse(server, "endless", {"tag": "deadline"})
    assert status == 200 and 3.5 < time.monotonic() - began < 15
    assert len(found) > 10 and found[-1] == {
        "error": "model 'endless' did not answer within the server's request timeout (4s)"
    }
    _wait_for(marks / "deadline", "closed")


def test_streams_need_the_token_like_every_request(server: Served) -> None:
    reply = httpx.post(_url(server, "markov", "generate_stream"), json={"text_input": "x"}, timeout=30)
    assert reply.status_code == 401 and "bearer token" in reply.json()["error"]


# --- REST: generate, infer ----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_generate_with_curl_answers_one_json_object_of_the_joined_tokens(server: Served, expected: Any) -> None:
    body = '{"text_input": "The river", "max_tokens": 12, "seed": 9, "id": "c1"}'
    out = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {TOKEN}", "-d", body, _url(server, "markov", "generate")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert json.loads(out) == {
        "model_name": "markov", "model_version": "1", "id": "c1", "text_output": expected("The river", 12, 9),
    }  # fmt: skip


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_streams_the_events_unbuffered(server: Served, expected: Any) -> None:
    body = '{"text_input": "The river", "max_tokens": 5}'
    out = subprocess.run(
        ["curl", "-sSN", "-H", f"Authorization: Bearer {TOKEN}", "-d", body, _url(server, "markov", "generate_stream")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    tokens = expected("The river", 5)
    assert out == "".join(
        f'data: {{"model_name":"markov","model_version":"1","text_output":{json.dumps(t)}}}\n\n' for t in tokens
    )


def test_generate_of_a_plain_model_and_its_errors(server: Served) -> None:
    reply = httpx.post(_url(server, "adder", "generate"), json={"X": [[1, 2]]}, headers=AUTH, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"model_name": "adder", "model_version": "1", "Y": [2.0, 3.0]}
    reply = httpx.post(_url(server, "fails_midway", "generate"), json={"tag": "g"}, headers=AUTH, timeout=30)
    assert reply.status_code == 500 and "the chain broke after two tokens" in reply.json()["error"]
    reply = httpx.post(_url(server, "adder", "generate"), content=b"[1, 2]", headers=AUTH, timeout=30)
    assert reply.status_code == 400 and reply.json() == {
        "error": "a generate request must be a JSON object, got a list"
    }


def test_infer_on_a_streaming_model_answers_the_joined_yields(server: Served, expected: Any) -> None:
    body = {
        "id": "i1",
        "inputs": [
            {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["The sea"]},
            {"name": "max_tokens", "datatype": "INT32", "shape": [1], "data": [7]},
        ],
    }
    reply = httpx.post(_url(server, "markov", "infer"), json=body, headers=AUTH, timeout=30)
    assert reply.status_code == 200
    assert reply.json()["outputs"] == [
        {"name": "text_output", "datatype": "BYTES", "shape": [7], "data": expected("The sea", 7)}
    ]


# --- flow: disconnects, slow readers -----------------------------------------------------------


@pytest.mark.parametrize("model", ["endless", "endless_async"])
def test_a_client_that_goes_away_mid_stream_closes_the_generator(server: Served, marks: Path, model: str) -> None:
    tag = f"gone-{model}"
    with httpx.stream("POST", _url(server, model, "generate_stream"), json={"tag": tag}, headers=AUTH, timeout=30) as r:
        stream = events(r.iter_lines())  # kept: a dropped iterator would close the response
        assert [json.loads(next(stream))["text_output"] for _ in range(3)] == ["t0", "t1", "t2"]
        time.sleep(0.2)
        if (marks / tag).exists():
            assert "closed" not in (marks / tag).read_text().splitlines()  # running until the client goes
    # Leaving the block closed the connection mid-stream.
    began = time.monotonic()
    _wait_for(marks / tag, "closed")
    assert time.monotonic() - began < 3  # at once, not at the 4 s deadline
    if model == "endless":
        # Its one slot (max_concurrency=1) is free again: the next stream runs.
        with httpx.stream("POST", _url(server, "endless", "generate_stream"), json={"tag": "again"}, headers=AUTH) as r:
            again = events(r.iter_lines())
            assert r.status_code == 200 and json.loads(next(again))["text_output"] == "t0"


def test_a_slow_reader_holds_the_generator_back(server: Served, marks: Path) -> None:
    tag = "slow-reader"
    with httpx.stream(
        "POST", _url(server, "flood", "generate_stream"), json={"tag": tag}, headers=AUTH, timeout=30
    ) as r:
        stream = events(r.iter_lines())  # kept: a dropped iterator would close the response
        next(stream)
        time.sleep(1.5)  # read nothing meanwhile
        lines = (marks / tag).read_text().splitlines()
        assert "closed" not in lines  # still streaming, only held back
        produced = lines.count("produced")
        assert json.loads(next(stream))["text_output"] == "x" * 100_000  # and it goes on when read
    # The socket buffers and a few events in flight hold a few MB; a generator that ran free
    # would have made many thousands of these 100 kB tokens in 1.5 s.
    assert produced < 400, produced
    _wait_for(marks / tag, "closed")


# --- gRPC: ModelStreamInfer ---------------------------------------------------------------------


def _inputs(prompt: str, count: int) -> list[grpcclient.InferInput]:
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
    tokens = grpcclient.InferInput("max_tokens", [1], "INT32")
    tokens.set_data_from_numpy(np.array([count], dtype=np.int32))
    return [text, tokens]


def _tag(value: str) -> list[grpcclient.InferInput]:
    tag = grpcclient.InferInput("tag", [1], "BYTES")
    tag.set_data_from_numpy(np.array([value.encode()], dtype=object))
    return [tag]


@pytest.fixture
def client(server: Served) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def _until_final(results: queue.Queue[Any], count: int) -> list[tuple[Any, Any]]:
    """What the stream's callback got until ``count`` requests had their final response or error."""
    got: list[tuple[Any, Any]] = []
    finals = 0
    while finals < count:
        result, error = results.get(timeout=30)
        got.append((result, error))
        if error is not None or result.get_response().parameters["triton_final_response"].bool_param:
            finals += 1
    return got


@pytest.mark.parametrize("empty_final", [True, False])
def test_model_stream_infer_sends_each_token_with_the_id_and_marks_the_last(
    client: grpcclient.InferenceServerClient, expected: Any, empty_final: bool
) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)), headers=GRPC_AUTH)
    try:
        client.async_stream_infer(
            "markov", _inputs("The road", 20), request_id="g1", enable_empty_final_response=empty_final
        )
        got = _until_final(results, 1)
    finally:
        client.stop_stream()
    assert all(error is None for _, error in got)
    responses = [result.get_response() for result, _ in got]
    assert {r.id for r in responses} == {"g1"} and {r.model_name for r in responses} == {"markov"}
    finals = [r.parameters["triton_final_response"].bool_param for r in responses]
    if empty_final:
        assert len(responses) == 21 and finals == [False] * 20 + [True] and not responses[-1].outputs
        tokens = [result.as_numpy("text_output")[0].decode() for result, _ in got[:-1]]
    else:
        assert len(responses) == 20 and finals == [False] * 19 + [True]
        tokens = [result.as_numpy("text_output")[0].decode() for result, _ in got]
    assert tokens == expected("The road", 20)


def test_model_stream_infer_marks_a_plain_models_one_response_final(client: grpcclient.InferenceServerClient) -> None:
    x = grpcclient.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)), headers=GRPC_AUTH)
    try:
        client.async_stream_infer("adder", [x], request_id="p1")
        client.async_stream_infer("adder", [x], request_id="p2", enable_empty_final_response=True)
        got = _until_final(results, 2)
    finally:
        client.stop_stream()
    by_id: dict[str, list[Any]] = {}
    for result, error in got:
        assert error is None
        by_id.setdefault(result.get_response().id, []).append(result)
    (only,) = by_id["p1"]
    assert only.get_response().parameters["triton_final_response"].bool_param
    np.testing.assert_array_equal(only.as_numpy("Y"), [[2, 3]])
    data, empty = by_id["p2"]
    assert not data.get_response().parameters["triton_final_response"].bool_param
    assert empty.get_response().parameters["triton_final_response"].bool_param and not empty.get_response().outputs


def test_model_stream_infer_runs_requests_side_by_side_and_an_error_carries_its_id(server: Served) -> None:
    """Triton's messages on a raw stub: the failed request's reply names it, the others go on."""

    def request(model: str, request_id: str, value: str, name: str = "tag") -> service_pb2.ModelInferRequest:
        message = service_pb2.ModelInferRequest(model_name=model, id=request_id)
        message.inputs.add(name=name, datatype="BYTES", shape=[1]).contents.bytes_contents.append(value.encode())
        message.parameters["triton_enable_empty_final_response"].bool_param = True
        return message

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        metadata = tuple(GRPC_AUTH.items())
        stream = stub.ModelStreamInfer(
            iter(
                [
                    request("fails_midway", "bad", "b"),
                    request("nobody", "lost", "x"),
                    request("markov", "ok", "The", "text_input"),
                ]
            ),
            metadata=metadata,
            timeout=30,
        )
        replies = list(stream)
    errors = {r.infer_response.id: r.error_message for r in replies if r.error_message}
    assert "the chain broke after two tokens" in errors["bad"]
    assert errors["lost"] == "unknown model 'nobody'"
    failed = next(r for r in replies if r.infer_response.id == "bad" and r.error_message)
    assert failed.infer_response.model_name == "fails_midway"
    assert failed.infer_response.parameters["triton_final_response"].bool_param
    tokens = [r for r in replies if r.infer_response.id == "bad" and not r.error_message]
    assert len(tokens) == 2  # the two tokens before the failure, then the error
    ok = [r for r in replies if r.infer_response.id == "ok"]
    assert len(ok) == 65 and not any(r.error_message for r in ok)  # 64 tokens and the empty final response
    assert [r.infer_response.parameters["triton_final_response"].bool_param for r in ok] == [False] * 64 + [True]


def test_a_stream_message_that_does_not_parse_fails_alone(server: Served) -> None:
    """A message that is not a ModelInferRequest gets an error reply; the requests around it are served."""
    good = service_pb2.ModelInferRequest(model_name="markov", id="ok")
    good.inputs.add(name="text_input", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"The")
    good.parameters["triton_enable_empty_final_response"].bool_param = True
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=None,  # the messages go as these bytes
            response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
        )
        messages = [good.SerializeToString(), b"\xff\xff\xff", good.SerializeToString()]
        replies = list(call(iter(messages), metadata=tuple(GRPC_AUTH.items()), timeout=30))
    (failed,) = [r for r in replies if r.error_message]
    assert "not a ModelInferRequest" in failed.error_message and failed.infer_response.id == ""
    assert failed.infer_response.parameters["triton_final_response"].bool_param
    ok = [r for r in replies if r.infer_response.id == "ok"]
    assert len(ok) == 2 * 65  # both requests: 64 tokens and the empty final response each


@pytest.mark.parametrize("empty_final", [True, False])
def test_model_stream_infer_fails_mid_stream_with_tritonclient(
    client: grpcclient.InferenceServerClient, empty_final: bool
) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)), headers=GRPC_AUTH)
    try:
        client.async_stream_infer("fails_midway", _tag("t"), request_id="f1", enable_empty_final_response=empty_final)
        got = _until_final(results, 1)
        # The stream goes on after the failed request.
        client.async_stream_infer("markov", _inputs("The", 2), request_id="after", enable_empty_final_response=True)
        after = _until_final(results, 1)
    finally:
        client.stop_stream()
    assert [r.as_numpy("text_output")[0] for r, e in got[:2]] == [b"t0", b"t1"]
    assert not any(r.get_response().parameters["triton_final_response"].bool_param for r, _ in got[:2])
    result, error = got[2]
    assert len(got) == 3 and result is None and "the chain broke after two tokens" in error.message()
    assert [r.get_response().id for r, e in after] == ["after"] * 3 and all(e is None for _, e in after)


def test_a_cancelled_grpc_stream_closes_the_generator(server: Served, marks: Path) -> None:
    message = service_pb2.ModelInferRequest(model_name="endless_async", id="e")
    message.inputs.add(name="tag", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"grpc-gone")
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelStreamInfer(iter([message]), metadata=tuple(GRPC_AUTH.items()), timeout=30)
        first = next(call)
        assert first.infer_response.id == "e" and not first.error_message
        call.cancel()
        began = time.monotonic()
    _wait_for(marks / "grpc-gone", "closed")
    assert time.monotonic() - began < 2.5  # at once, not at the 4 s deadline


def test_model_infer_on_a_streaming_model_answers_the_joined_yields(
    client: grpcclient.InferenceServerClient, expected: Any
) -> None:
    result = client.infer("markov", _inputs("The mill", 6), request_id="u1", headers=GRPC_AUTH)
    assert result.get_response().id == "u1"
    assert [t.decode() for t in result.as_numpy("text_output")] == expected("The mill", 6)


def test_other_methods_on_the_generate_paths_are_refused(server: Served) -> None:
    reply = httpx.get(_url(server, "markov", "generate_stream"), headers=AUTH, timeout=30)
    assert reply.status_code == 405 and "error" in reply.json()


def test_an_open_stream_counts_against_the_in_flight_limit(marks: Path) -> None:
    env = {"STREAM_MARKS": str(marks)}
    with serve("tests/serving/stream_models.py", env=env, protocols=("rest",), args=("--max-inflight", "1")) as one:
        one.wait_ready()
        url = f"http://{one.http_url}/v2/models/endless/generate_stream"
        with httpx.stream("POST", url, json={"tag": "inflight"}, timeout=30) as first:
            stream = events(first.iter_lines())  # kept: a dropped iterator would close the response
            assert json.loads(next(stream))["text_output"] == "t0"
            refused = httpx.post(url, json={"tag": "second"}, timeout=30)
            assert refused.status_code == 503 and "--max-inflight" in refused.json()["error"]
            assert refused.headers["retry-after"] == "1"
        _wait_for(marks / "inflight", "closed")
        # Once the first stream has ended, the next is admitted.
        with httpx.stream("POST", url, json={"tag": "third"}, timeout=30) as third:
            assert third.status_code == 200
