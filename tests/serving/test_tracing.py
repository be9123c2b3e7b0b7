"""OpenTelemetry traces of a real ``omi serve``: a server span per request on REST, gRPC and OMI,
its parent the caller's W3C ``traceparent``, with ``decode``, ``queue``, ``predict`` and ``encode``
children; configured by the application (an in-memory exporter) or by ``OTEL_*`` variables alone
(the SDK's console exporter); an exporter that is not installed is a one-line error.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from omi_adapters.protos import modzy_model_pb2 as omi_pb
from omi_adapters.protos import modzy_model_pb2_grpc as omi_grpc
from tests.conftest import EXAMPLES
from tests.servers import ROOT, serve

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent
BODY = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
CHILDREN = ["decode", "queue", "predict", "encode"]


def _traceparent(n: int) -> tuple[str, str, str]:
    trace_id, span_id = f"{0xABC0 + n:032x}", f"{0x1230 + n:016x}"
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _tree(spans: list[dict[str, Any]], trace_id: str) -> tuple[dict[str, Any], list[str]]:
    """The one server span of ``trace_id`` and the names of its children, in start order."""
    mine = [s for s in spans if s["trace_id"] == trace_id]
    (server,) = [s for s in mine if s["kind"] == "SERVER"]
    children = sorted((s for s in mine if s["parent_id"] == server["span_id"]), key=lambda s: s["start"])
    for child in children:
        assert server["start"] <= child["start"] <= child["end"] <= server["end"], child
    return server, [c["name"] for c in children]


def test_every_protocol_has_a_server_span_under_the_callers_trace_with_its_steps_as_children() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spans_file = Path(tmp, "spans.jsonl")
        with serve(
            EXAMPLES / "adder.py", HERE / "batch_models.py",
            protocols=("rest", "grpc", "omi"),
            launcher=(str(HERE / "traced_serve.py"),),
            env={"OMI_TEST_SPANS": str(spans_file)},
        ) as srv:  # fmt: skip
            srv.wait_ready()
            rest_ok, rest_bad, batched, grpc_ok, omi_ok, sse, stream = (_traceparent(n) for n in range(7))
            url = f"http://{srv.http_url}/v2/models"
            reply = httpx.post(f"{url}/adder/infer", json=BODY, headers={"traceparent": rest_ok[2]}, timeout=10)
            assert reply.status_code == 200
            reply = httpx.post(f"{url}/nobody/infer", json=BODY, headers={"traceparent": rest_bad[2]}, timeout=10)
            assert reply.status_code == 404
            body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [3]}]}
            reply = httpx.post(f"{url}/doubler/infer", json=body, headers={"traceparent": batched[2]}, timeout=10)
            assert reply.status_code == 200

            reply = httpx.post(
                f"{url}/adder/generate_stream", json={"X": [[1.0, 2.0]]}, headers={"traceparent": sse[2]}, timeout=10
            )
            assert reply.status_code == 200 and reply.text.startswith("data: ")

            client = grpcclient.InferenceServerClient(srv.grpc_url)
            tensor = grpcclient.InferInput("X", [1, 1], "FP32")
            tensor.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
            client.infer("adder", [tensor], headers={"traceparent": grpc_ok[2]})
            answers: queue.Queue[Any] = queue.Queue()
            client.start_stream(callback=lambda result, error: answers.put(error or result),
                                headers={"traceparent": stream[2]})  # fmt: skip
            client.async_stream_infer("adder", [tensor], enable_empty_final_response=True)
            first = answers.get(timeout=30)
            assert not isinstance(first, Exception), first
            answers.get(timeout=30)  # the empty final response
            client.stop_stream()
            client.close()
            with grpc.insecure_channel(srv.omi_url) as channel:
                run = omi_grpc.ModzyModelStub(channel).Run(
                    omi_pb.RunRequest(inputs=[omi_pb.InputItem(input={"X": b"[[1.0]]"})]),
                    metadata=(("traceparent", omi_ok[2]),),
                    timeout=30,
                )
            assert run.outputs[0].success
            assert srv.terminate() == 0
        spans = [json.loads(line) for line in spans_file.read_text().splitlines()]

    server, children = _tree(spans, rest_ok[0])
    assert server["parent_id"] == rest_ok[1]  # the caller's span
    assert server["name"] == "POST /v2/models/{model_name}/infer"
    attributes = server["attributes"]
    assert (attributes["omi.model"], attributes["omi.model_version"], attributes["omi.protocol"]) == (
        "adder",
        "1",
        "rest",
    )
    assert (attributes["omi.outcome"], attributes["http.response.status_code"], server["status"]) == (
        "200",
        200,
        "UNSET",
    )
    assert children == CHILDREN

    server, children = _tree(spans, rest_bad[0])
    assert (server["attributes"]["omi.outcome"], server["attributes"]["error.type"], server["status"]) == (
        "404", "NOT_FOUND", "ERROR",
    )  # fmt: skip
    assert "omi.model" not in server["attributes"] and children == []

    server, children = _tree(spans, batched[0])
    assert server["attributes"]["omi.model"] == "doubler" and children == CHILDREN
    (predict,) = [s for s in spans if s["trace_id"] == batched[0] and s["name"] == "predict"]
    assert predict["attributes"]["omi.batch_rows"] == 1

    server, children = _tree(spans, grpc_ok[0])
    assert server["parent_id"] == grpc_ok[1]
    assert server["name"] == "inference.GRPCInferenceService/ModelInfer"
    assert (server["attributes"]["omi.protocol"], server["attributes"]["omi.outcome"]) == ("grpc", "OK")
    assert server["attributes"]["rpc.method"] == "ModelInfer" and children == CHILDREN

    server, children = _tree(spans, omi_ok[0])
    assert server["parent_id"] == omi_ok[1] and server["name"] == "ModzyModel/Run"
    assert (server["attributes"]["omi.protocol"], server["attributes"]["omi.outcome"]) == ("omi", "success")
    assert children == CHILDREN

    server, children = _tree(spans, sse[0])
    assert server["name"] == "POST /v2/models/{model_name}/generate_stream"
    assert (server["attributes"]["omi.model"], server["attributes"]["omi.outcome"]) == ("adder", "200")

    server, children = _tree(spans, stream[0])  # a stream's metadata is the parent of each of its requests
    assert server["parent_id"] == stream[1] and server["name"] == "inference.GRPCInferenceService/ModelStreamInfer"
    assert (server["attributes"]["omi.outcome"], children[0]) == ("OK", "decode")

    # Health and readiness are not traced: every server span is one of the requests above.
    assert len([s for s in spans if s["kind"] == "SERVER"]) == 7


def _console_spans(text: str) -> list[dict[str, Any]]:
    """The spans the SDK's console exporter printed (indented JSON objects), among the log lines."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := text.find("{\n", at)) != -1:
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


def test_otel_variables_alone_turn_tracing_on_with_the_sdks_exporter() -> None:
    trace_id, span_id, header = _traceparent(9)
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "adder-svc", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with serve(EXAMPLES / "adder.py", protocols=("rest",), env=env) as srv:
        srv.wait_ready()
        url = f"http://{srv.http_url}/v2/models/adder/infer"
        assert httpx.post(url, json=BODY, headers={"traceparent": header}, timeout=10).status_code == 200
        assert srv.terminate() == 0
        spans = _console_spans(srv.output())
    mine = [s for s in spans if s["context"]["trace_id"] == f"0x{trace_id}"]
    server = next(s for s in mine if s["kind"] == "SpanKind.SERVER")
    assert server["parent_id"] == f"0x{span_id}"
    assert server["resource"]["attributes"]["service.name"] == "adder-svc"
    assert sorted(s["name"] for s in mine if s["parent_id"] == server["context"]["span_id"]) == sorted(CHILDREN)


def test_an_exporter_that_is_not_installed_is_a_one_line_error() -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "no-such-exporter"}
    done = subprocess.run(
        [sys.executable, "-m", "omi_adapters.cli", "serve", str(EXAMPLES / "adder.py"), "--http-port", "0"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("omi: OTEL_TRACES_EXPORTER names 'no-such-exporter'"), done.stderr
    assert "installed: console" in lines[-1] and "Traceback" not in done.stderr


def test_without_otel_configuration_nothing_of_opentelemetry_is_imported() -> None:
    code = (
        "import sys; from omi_adapters import tracing; "
        "on = tracing.configure({}); "
        "print(on, sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False []"


def test_an_exporter_named_without_the_sdk_installed_is_a_warning_and_no_tracing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from omi_adapters import tracing

    monkeypatch.setattr(tracing, "active", False)
    monkeypatch.setattr(tracing, "_sdk_installed", lambda: False)
    with caplog.at_level("WARNING", logger="omi_adapters.tracing"):
        assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) is False
    assert not tracing.active
    assert "tracing is off" in caplog.text and "otlp" in caplog.text and "omi-adapters[otel]" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="omi_adapters.tracing"):
        assert tracing.configure({}) is False  # nothing asked for: nothing said
    assert caplog.text == ""
