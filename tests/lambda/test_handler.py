"""The handler in-process: cold starts, payload limits, SnapStart hooks, odd events, imports."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from omi_adapters.errors import ConfigurationError
from tests.conftest import EXAMPLES, ROOT

from . import lambda_models
from .events import http_event, response_body, response_headers

ADD = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
COUNT = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [0]}]}


@pytest.fixture
def adder() -> Any:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import adder as module
    finally:
        sys.path.remove(str(EXAMPLES))
    return module.adder


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_the_handler_loads_no_grpc() -> None:
    code = (
        "import sys, json\n"
        "import omi_lambda\n"
        "light = sorted(m for m in ('fastapi', 'mangum', 'grpc') if m in sys.modules)\n"
        "handler = omi_lambda.handler\n"
        "answer = handler({'inputs': [{'name': 'X', 'datatype': 'FP32', 'shape': [1, 1], 'data': [1]}]}, None)\n"
        "print(json.dumps([light, answer, sorted(sys.modules)]))\n"
    )
    done = _run(code, OMI_MODEL="examples/adder.py:adder")
    assert done.returncode == 0, done.stderr
    emf, printed = done.stdout.splitlines()  # the invocation's metrics line, then what the code printed
    assert json.loads(emf)["model"] == "adder"
    light, answer, modules = json.loads(printed)
    assert light == []  # the package itself is free; the framework comes with the handler
    assert answer["outputs"][0]["data"] == [2.0] and answer["parameters"]["cold_start"] is True
    assert "mangum" in modules and "fastapi" in modules
    assert not [m for m in modules if m == "grpc" or m.startswith(("grpc.", "google.protobuf", "uvicorn"))]


def test_the_env_handler_says_what_is_missing() -> None:
    done = _run("import omi_lambda; omi_lambda.handler", OMI_MODEL="")
    assert done.returncode != 0
    assert "$OMI_MODEL is not set: set it to the model(s) to serve, as module:attr" in done.stderr
    done = _run("import omi_lambda; omi_lambda.handler", OMI_MODEL="examples/nosuch.py")
    assert "no such file examples/nosuch.py" in done.stderr


def test_build_handler_refuses_what_is_not_a_model() -> None:
    from omi_lambda import build_handler

    with pytest.raises(ConfigurationError, match="needs a model made with @model"):
        build_handler("adder")
    with pytest.raises(ConfigurationError, match="got int"):
        build_handler([1])


def test_cold_start_is_per_execution_environment(make_handler: Any, adder: Any, events_dir: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="omi_lambda")
    event = http_event(events_dir, "http-api", "POST", "/v2/models/adder/infer", json.dumps(ADD).encode())
    first = make_handler(adder)
    answers = [first(event), first(event)]
    assert [response_headers(a)["x-omi-cold-start"] for a in answers] == ["true", "false"]
    second = make_handler(adder)  # a new environment starts cold again
    assert response_headers(second(event))["x-omi-cold-start"] == "true"
    reports = [r.getMessage() for r in caplog.records if "cold start" in r.getMessage()]
    assert len(reports) == 2
    assert "init " in reports[0] and "adder v1 (eager) ready in" in reports[0]


def test_lazy_models_load_on_the_first_invocation_once(make_handler: Any) -> None:
    before = len(lambda_models.LOADS)
    counter = lambda_models.new_counter()
    handler = make_handler(counter)
    assert counter.state.value == "UNLOADED"  # INIT did not load it
    outputs = [{o["name"]: o["data"] for o in handler(COUNT)["outputs"]} for _ in range(3)]
    assert [o["LOADS"] for o in outputs] == [[before + 1]] * 3


def test_a_request_over_6_mb_is_refused_before_any_work(make_handler: Any, events_dir: Path) -> None:
    from omi_lambda.function import PAYLOAD_LIMIT

    before = len(lambda_models.LOADS)
    counter = lambda_models.new_counter()
    handler = make_handler([counter])
    body = json.dumps(COUNT).encode().ljust(PAYLOAD_LIMIT, b" ")  # 6 MB of JSON is 8 MB of base64
    for kind in ("http-api", "rest-api", "alb"):
        answer = handler(http_event(events_dir, kind, "POST", "/v2/models/counter/infer", body))
        assert answer["statusCode"] == 413
        error = json.loads(response_body(answer))["error"]
        assert "exceeds Lambda's limit of 6291456 bytes (6 MB)" in error
    assert len(lambda_models.LOADS) == before and counter.state.value == "UNLOADED"  # nothing ran
    small = handler(http_event(events_dir, "http-api", "POST", "/v2/models/counter/infer", json.dumps(COUNT).encode()))
    assert small["statusCode"] == 200


def test_a_direct_response_over_6_mb_is_an_error_object(make_handler: Any) -> None:
    handler = make_handler(lambda_models.big)
    answer = handler({"inputs": [{"name": "N", "datatype": "INT64", "shape": [1], "data": [4_000_000]}]})
    assert answer["status_code"] == 413 and "exceeds Lambda's limit" in answer["error"]
    answer = handler({"inputs": [{"name": "N", "datatype": "INT64", "shape": [1], "data": [3]}]})
    assert answer["outputs"][0]["data"] == [0, 0, 0]


def _sent_size(answer: dict[str, Any]) -> int:
    from awslambdaric.lambda_runtime_marshaller import to_json

    return len(to_json(answer).encode())  # what the runtime sends back to Lambda


def test_a_direct_response_is_measured_as_the_runtime_encodes_it(make_handler: Any) -> None:
    from omi_lambda.function import PAYLOAD_LIMIT

    handler = make_handler(lambda_models.tenths)
    # 1.3 million float32 0.1: 5.2 MB as compact JSON, 6.5 MB as the runtime writes it.
    answer = handler({"inputs": [{"name": "N", "datatype": "INT64", "shape": [1], "data": [1_300_000]}]})
    assert answer.get("status_code") == 413 and "exceeds Lambda's limit" in answer["error"]
    answer = handler({"inputs": [{"name": "N", "datatype": "INT64", "shape": [1], "data": [1_000_000]}]})
    data = answer["outputs"][0]["data"]
    assert len(data) == 1_000_000 and data[0] == 0.1  # written as the REST API writes float32 0.1
    assert _sent_size(answer) <= PAYLOAD_LIMIT


def test_an_http_response_is_measured_with_its_escaped_body(make_handler: Any, events_dir: Path) -> None:
    from omi_lambda.function import PAYLOAD_LIMIT

    handler = make_handler(lambda_models.letters)

    def ask(n: int) -> dict[str, Any]:
        request = {"inputs": [{"name": "N", "datatype": "INT64", "shape": [1], "data": [n]}]}
        return handler(
            http_event(events_dir, "http-api", "POST", "/v2/models/letters/infer", json.dumps(request).encode())
        )

    # 1.2 million "a": a 4.8 MB body, whose quotes the runtime escapes into 7.2 MB.
    answer = ask(1_200_000)
    assert answer["statusCode"] == 413 and "exceeds Lambda's limit" in json.loads(response_body(answer))["error"]
    answer = ask(900_000)
    assert answer["statusCode"] == 200 and _sent_size(answer) <= PAYLOAD_LIMIT


def test_snapstart_hooks_load_before_the_snapshot(make_handler: Any, caplog: Any) -> None:
    from awslambdaric import lambda_runtime_hooks_runner

    caplog.set_level(logging.INFO, logger="omi_lambda")
    counter = lambda_models.new_counter()
    lazy = make_handler(counter)
    assert counter.state.value == "UNLOADED"
    lambda_runtime_hooks_runner.run_before_snapshot()  # what the runtime does in a SnapStart INIT
    assert counter.state.value == "READY"
    assert lazy(COUNT)["parameters"]["cold_start"] is True
    assert lazy(COUNT)["parameters"]["cold_start"] is False
    lambda_runtime_hooks_runner.run_after_restore()  # a restored environment starts cold again
    assert lazy(COUNT)["parameters"]["cold_start"] is True
    assert any("restored from a SnapStart snapshot" in r.getMessage() for r in caplog.records)


def test_function_url_events(make_handler: Any, adder: Any, events_dir: Path) -> None:
    # Function URLs send the HTTP API's payload format 2.0 from their own domain, without a stage.
    event = http_event(events_dir, "http-api", "POST", "/v2/models/adder/infer", json.dumps(ADD).encode())
    event["requestContext"].update(
        domainName="abcdefg.lambda-url.us-east-1.on.aws", domainPrefix="abcdefg", stage="$default"
    )
    event["requestContext"].pop("authentication")
    answer = make_handler(adder)(event)
    assert answer["statusCode"] == 200
    assert json.loads(response_body(answer))["outputs"][0]["data"] == [2.0, 3.0]


@pytest.mark.parametrize(
    "event, message",
    [
        ([1, 2], "unsupported event"),
        ("inputs", "unsupported event"),
        ({"hello": "world"}, "unsupported event"),
        ({"requestContext": {"elb": {}}, "httpMethod": "GET"}, "malformed HTTP event"),
        ({"inputs": "X"}, "'inputs' must be a list"),
    ],
)
def test_odd_events_get_clear_errors(make_handler: Any, adder: Any, event: Any, message: str) -> None:
    answer = make_handler(adder)(event)
    error = answer["error"] if "error" in answer else json.loads(answer["body"])["error"]
    assert message in error
    assert answer.get("status_code", answer.get("statusCode")) == 400


def test_binary_bodies_are_base64_both_ways(make_handler: Any, adder: Any, events_dir: Path) -> None:
    import numpy as np

    data = np.array([[1.5, 2.5]], dtype=np.float32)
    header = json.dumps({
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}],
        "outputs": [{"name": "Y", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    event = http_event(
        events_dir, "rest-api", "POST", "/v2/models/adder/infer", header + data.tobytes(),
        {"Inference-Header-Content-Length": str(len(header))},
    )  # fmt: skip
    answer = make_handler(adder)(event)
    assert answer["isBase64Encoded"] is True
    raw = base64.b64decode(answer["body"])
    length = int(response_headers(answer)["inference-header-content-length"])
    assert np.frombuffer(raw[length:], dtype="<f4").tolist() == [2.5, 3.5]


def test_alb_with_multi_value_headers(make_handler: Any, adder: Any, events_dir: Path) -> None:
    # A target group with multi-value headers sends and expects multiValueHeaders only.
    event = http_event(events_dir, "alb", "POST", "/v2/models/adder/infer", json.dumps(ADD).encode())
    event["multiValueHeaders"] = {name: [value] for name, value in event.pop("headers").items()}
    event["multiValueQueryStringParameters"] = {"query": ["1234ABCD"]}
    answer = make_handler(adder)(event)
    assert answer["statusCode"] == 200 and "headers" not in answer
    assert answer["multiValueHeaders"]["x-omi-cold-start"] == ["true"]
    assert json.loads(response_body(answer))["outputs"][0]["data"] == [2.0, 3.0]


@pytest.mark.parametrize(("field", "value"), [("httpMethod", []), ("httpMethod", "P O S T"), ("path", {"a": 1})])
def test_an_event_whose_method_or_path_is_not_text_is_a_400(
    make_handler: Any, adder: Any, events_dir: Path, field: str, value: Any
) -> None:
    event = http_event(events_dir, "alb", "POST", "/v2/models/adder/infer", json.dumps(ADD).encode())
    event[field] = value
    answer = make_handler(adder)(event)
    assert answer["statusCode"] == 400, answer
    assert "malformed HTTP event" in json.loads(response_body(answer))["error"]


class _Context:
    """The part of the Lambda context the handler reads: the invocation's remaining time."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - time.monotonic()) * 1000)


def test_a_hanging_predict_is_answered_504_before_the_invocation_times_out(
    make_handler: Any, adder: Any, events_dir: Path
) -> None:
    handler = make_handler([lambda_models.hangs, adder])
    slow = {"model_name": "hangs", "inputs": [{"name": "SECONDS", "datatype": "FP32", "shape": [1], "data": [2]}]}
    started = time.monotonic()
    answer = handler(slow, _Context(0.75))
    assert time.monotonic() - started < 1.5
    assert answer["status_code"] == 504, answer
    assert "did not answer within the client's deadline" in answer["error"]
    event = http_event(events_dir, "http-api", "POST", "/v2/models/hangs/infer", json.dumps(slow).encode())
    response = handler(event, _Context(0.75))
    assert response["statusCode"] == 504, response
    assert "the client's deadline" in json.loads(response_body(response))["error"]
    # The other model answers in time meanwhile.
    assert handler({"model_name": "adder", **ADD}, _Context(5))["outputs"][0]["data"] == [2.0, 3.0]


@pytest.mark.parametrize("path", ["http", "direct"])
def test_a_predict_calling_sys_exit_is_a_500_not_the_end_of_the_environment(
    make_handler: Any, adder: Any, events_dir: Path, path: str
) -> None:
    handler = make_handler([lambda_models.exits, adder])
    request = {"model_name": "exits", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1]}]}
    if path == "direct":
        answer = handler(request, _Context(5))
        assert answer["status_code"] == 500 and "SystemExit: the model called sys.exit" in answer["error"]
    else:
        event = http_event(events_dir, "http-api", "POST", "/v2/models/exits/infer", json.dumps(request).encode())
        response = handler(event, _Context(5))
        assert response["statusCode"] == 500
        assert json.loads(response_body(response)) == {
            "error": "model 'exits' failed: SystemExit: the model called sys.exit"
        }
    assert handler({"model_name": "adder", **ADD}, _Context(5))["outputs"][0]["data"] == [2.0, 3.0]


def _markov() -> Any:
    from omi_adapters.targets import load_target

    return load_target(str(EXAMPLES / "markov" / "model.py"))[0]


def _markov_tokens(model: Any, prompt: str, count: int) -> list[str]:
    import numpy as np

    arrays = {"text_input": np.array([prompt.encode()], dtype=object), "max_tokens": np.array([count], dtype=np.int32)}
    return [bytes(t[0]).decode() for t in model.wait_ready()(**arrays)]


def test_generate_answers_a_streaming_models_joined_tokens(make_handler: Any, events_dir: Path) -> None:
    markov = _markov()
    handler = make_handler(markov)
    body = json.dumps({"text_input": "The river", "max_tokens": 8, "id": "l1"}).encode()
    answer = handler(http_event(events_dir, "http-api", "POST", "/v2/models/markov/generate", body))
    assert answer["statusCode"] == 200
    assert json.loads(response_body(answer)) == {
        "model_name": "markov", "model_version": "1", "id": "l1", "text_output": _markov_tokens(markov, "The river", 8),
    }  # fmt: skip


def test_generate_stream_returns_the_whole_event_stream_in_one_body(make_handler: Any, events_dir: Path) -> None:
    from tests.sse import events

    markov = _markov()
    handler = make_handler(markov)
    body = json.dumps({"text_input": "The river", "max_tokens": 6}).encode()
    answer = handler(http_event(events_dir, "rest-api", "POST", "/v2/models/markov/generate_stream", body))
    assert answer["statusCode"] == 200
    assert response_headers(answer)["content-type"] == "text/event-stream; charset=utf-8"
    found = [json.loads(data) for data in events(response_body(answer).decode().split("\n"))]
    assert [e["text_output"] for e in found] == _markov_tokens(markov, "The river", 6)
    bad = handler(http_event(events_dir, "rest-api", "POST", "/v2/models/markov/generate_stream", b'{"max_tokens": 1}'))
    assert bad["statusCode"] == 400 and json.loads(response_body(bad)) == {
        "error": "missing input 'text_input' (BYTES [1])"
    }


def test_a_direct_invocation_of_a_streaming_model_gets_its_joined_yields(make_handler: Any) -> None:
    markov = _markov()
    request = {
        "model_name": "markov",
        "inputs": [
            {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["The sea"]},
            {"name": "max_tokens", "datatype": "INT32", "shape": [1], "data": [5]},
        ],
    }
    answer = make_handler(markov)(request)
    assert answer["outputs"][0]["shape"] == [5] and answer["outputs"][0]["data"] == _markov_tokens(markov, "The sea", 5)
