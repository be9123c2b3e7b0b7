"""The ModzyModel servicer on a real grpc.aio server in this process, driven by a grpcio client."""

from __future__ import annotations

import io
import json
import time

import grpc
import numpy as np
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from omi_adapters.protos import modzy_model_pb2 as pb
from tests.omi import models
from tests.omi.inproc import serve_in_process


def items(*files: dict[str, bytes]) -> list[pb.InputItem]:
    return [pb.InputItem(input=f) for f in files]


def errors(reply: pb.RunResponse) -> list[str | None]:
    return [None if o.success else o.output["error"].decode() for o in reply.outputs]


def test_status_reports_the_declared_metadata_and_initializes_once() -> None:
    with serve_in_process(models.adder) as srv:
        first = srv.stub.Status(pb.StatusRequest(), timeout=10)
        assert (first.status_code, first.status, first.message) == (200, "OK", "Model Initialized Successfully.")
        info = first.model_info
        assert (info.model_name, info.model_version, info.model_author, info.model_type, info.source) == (
            "adder",
            "2",
            "Ada <ada@example.com>",
            "grpc",
            "omi-adapters",
        )
        d = first.description
        assert (d.summary, d.details, d.technical, d.performance) == (
            "Adds one.",
            "Adds one to every element.",
            "numpy",
            "exact",
        )
        [i] = first.inputs
        assert (i.filename, list(i.accepted_media_types), i.max_size, i.description) == (
            "X",
            ["application/json", "application/x-npy"],
            "1K",
            "any matrix",
        )
        [o] = first.outputs
        assert (o.filename, o.media_type, o.max_size, o.description) == ("Y", "application/json", "1M", "X + 1")
        r = first.resources
        assert (r.required_ram, r.num_cpus, r.num_gpus) == ("128M", 0.5, 0)
        assert (first.timeout.status, first.timeout.run) == ("30s", "20s")
        f = first.features
        assert (f.batch_size, f.retrainable, f.results_format, f.adversarial_defense, f.drift_format) == (
            1,
            True,
            "json",
            False,
            "",
        )
        second = srv.stub.Status(pb.StatusRequest(), timeout=10)
        assert (second.status_code, second.message) == (200, "Model Already Initialized.")
        assert second.model_info == first.model_info and second.features == first.features


def test_a_model_that_fails_to_load_answers_500_and_the_server_stays_up() -> None:
    with serve_in_process(models.Broken) as srv:
        for _ in range(2):
            reply = srv.stub.Status(pb.StatusRequest(), timeout=10)
            assert (reply.status_code, reply.status) == (500, "Internal Server Error")
            assert reply.message.startswith("Model Failed to Initialize: ")
            assert "RuntimeError: weights file is missing" in reply.message
            assert reply.model_info.model_name == "broken"
        run = srv.stub.Run(pb.RunRequest(inputs=items({"X": b"[1]"}, {"X": b"[2]"})), timeout=10)
        assert run.status_code == 200 and len(run.outputs) == 2
        assert all(e is not None and "weights file is missing" in e for e in errors(run))


def test_run_before_status_loads_the_model_once() -> None:
    models.LOADS.clear()
    with serve_in_process(models.Lazy) as srv:
        run = srv.stub.Run(pb.RunRequest(inputs=items({"X": b"[1, 2]"}, {"X": b"[3]"})), timeout=10)
        assert [orjson.loads(o.output["Y"]) for o in run.outputs] == [[101, 102], [103]]
        assert (run.status_code, run.status, run.message) == (200, "OK", "Inference executed")
        status = srv.stub.Status(pb.StatusRequest(), timeout=10)
        assert status.status_code == 200 and len(models.LOADS) == 1


def test_large_runs_are_decoded_off_the_loop_with_the_same_results() -> None:
    big = np.arange(50_000, dtype=np.int64)
    buffer = io.BytesIO()
    np.save(buffer, big)
    with serve_in_process(models.Lazy) as srv:
        reply = srv.stub.Run(
            pb.RunRequest(inputs=items({"X": buffer.getvalue()}, {"X": b"[1]"}, {"X": b"[1.5]"})), timeout=30
        )
        assert orjson.loads(reply.outputs[0].output["Y"]) == (big + 100).tolist()
        assert orjson.loads(reply.outputs[1].output["Y"]) == [101]
        assert "INT64 data must be integers" in errors(reply)[2]


def test_good_and_bad_items_in_one_call_fail_alone_in_order() -> None:
    with serve_in_process(models.adder) as srv:
        buffer = io.BytesIO()
        np.save(buffer, np.ones((1, 2), dtype=np.float32))
        reply = srv.stub.Run(pb.RunRequest(inputs=items(
            {"X": b"[[1, 2], [3, 4]]"},
            {"X": b"[[NaN]]"},
            {"X": b'{"datatype": "FP32", "shape": [1, 1], "data": ["nan"]}'},
            {"Y": b"[[1]]"},
            {},
            {"X": json.dumps([[0.5] * 300]).encode()},
            {"X": buffer.getvalue()},
            {"X": b"[1, 2]"},
        )), timeout=10)  # fmt: skip
        assert reply.status_code == 200 and len(reply.outputs) == 8
        found = errors(reply)
        assert found[0] is None and orjson.loads(reply.outputs[0].output["Y"]) == [[2, 3], [4, 5]]
        assert "is not valid JSON" in found[1]
        assert "FP32 data must be numbers" in found[2]
        assert found[3] == "unknown input file(s) 'Y'; the input files are: X"
        assert found[4] == "missing input file(s) 'X' (FP32 [-1, -1])"
        assert "larger than its max_size 1K" in found[5]
        assert found[6] is None and orjson.loads(reply.outputs[6].output["Y"]) == [[2, 2]]
        assert found[7] == "input file 'X': expected FP32 [-1, -1], got FP32 [2]"
        assert set(reply.outputs[1].output) == {"error"}


def test_an_exception_inside_predict_is_reported_per_item() -> None:
    with serve_in_process(models.adder) as srv:
        buffer = io.BytesIO()
        np.save(buffer, np.array([[np.nan]], dtype=np.float32))
        reply = srv.stub.Run(pb.RunRequest(inputs=items({"X": buffer.getvalue()}, {"X": b"[[1]]"})), timeout=10)
        assert errors(reply) == ["model 'adder' failed: ValueError: X holds NaN", None]


def test_items_are_batched_up_to_max_batch_size_and_keep_their_order() -> None:
    with serve_in_process(models.scaler) as srv:
        files = [{"X": json.dumps([i, 1, 2]).encode()} for i in range(10)]
        reply = srv.stub.Run(pb.RunRequest(inputs=items(*files)), timeout=10)
        assert srv.stub.Status(pb.StatusRequest(), timeout=10).features.batch_size == 4
        assert all(o.success for o in reply.outputs)
        assert [int(orjson.loads(o.output["BATCH"])) for o in reply.outputs] == [4] * 8 + [2] * 2
        ys = [np.load(io.BytesIO(o.output["Y"])) for o in reply.outputs]
        assert [y.tolist() for y in ys] == [[2.0 * i, 2.0, 4.0] for i in range(10)]


def test_a_bad_item_in_a_batch_fails_alone() -> None:
    with serve_in_process(models.scaler) as srv:
        files = [{"X": json.dumps([i, 1, 2]).encode()} for i in (1, -1, 2, 3, 4)]
        reply = srv.stub.Run(pb.RunRequest(inputs=items(*files)), timeout=10)
        assert errors(reply) == [None, "X must not be negative", None, None, None]
        assert [int(orjson.loads(o.output["BATCH"])) for o in reply.outputs if o.success] == [1, 1, 1, 1]
        assert np.load(io.BytesIO(reply.outputs[4].output["Y"])).tolist() == [8.0, 2.0, 4.0]


def test_raw_text_in_and_out_with_a_size_limit() -> None:
    with serve_in_process(models.shout) as srv:
        status = srv.stub.Status(pb.StatusRequest(), timeout=10)
        assert list(status.inputs[0].accepted_media_types) == ["text/plain", "application/json"]
        assert [(o.filename, o.media_type) for o in status.outputs] == [
            ("UPPER", "text/plain"),
            ("WORDS", "application/json"),
        ]
        reply = srv.stub.Run(pb.RunRequest(inputs=items(
            {"TEXT": b"hello omi world"}, {"TEXT": b'["from json"]'}, {"TEXT": b"x" * 65}, {"TEXT": "d\u00e9j\u00e0 vu".encode()},
        )), timeout=10)  # fmt: skip
        assert [o.output.get("UPPER") for o in reply.outputs] == [
            b"HELLO OMI WORLD",
            b"FROM JSON",
            None,
            "D\u00c9J\u00c0 VU".encode(),
        ]
        assert [o.output.get("WORDS") for o in reply.outputs] == [b"3", b"2", None, b"2"]
        assert errors(reply)[2] == "input file 'TEXT' is 65 bytes, larger than its max_size 64"


def test_the_run_timeout_fails_slow_items_only() -> None:
    with serve_in_process(models.slow) as srv:
        started = time.monotonic()
        reply = srv.stub.Run(pb.RunRequest(inputs=items({"X": b"[0]"}, {"X": b"[1.5]"})), timeout=10)
        assert time.monotonic() - started < 1.2  # the 200ms run timeout, not the 1.5 s predict
        assert errors(reply) == [None, "model 'slow' did not answer within its run timeout (200ms)"]


def test_the_run_timeout_is_per_item_not_for_the_wait_behind_the_others() -> None:
    # 12 items of 60 ms on 2 threads would take 360 ms if queued at once: past the 300 ms timeout.
    with serve_in_process(models.steady, workers=2) as srv:
        reply = srv.stub.Run(pb.RunRequest(inputs=items(*({"X": f"[{i}]".encode()} for i in range(12)))), timeout=30)
        assert errors(reply) == [None] * 12
        assert [orjson.loads(o.output["Y"]) for o in reply.outputs] == [[i] for i in range(12)]


def test_the_status_timeout_bounds_loading() -> None:
    with serve_in_process(models.Sluggish) as srv:
        reply = srv.stub.Status(pb.StatusRequest(), timeout=10)
        assert reply.status_code == 500
        assert "did not finish loading within its status timeout (100ms)" in reply.message
        deadline = time.monotonic() + 10  # the load goes on; a later Status finds it done
        while (later := srv.stub.Status(pb.StatusRequest(), timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, later.message
            time.sleep(0.1)
        assert later.message == "Model Initialized Successfully."


def test_drift_and_explain_reach_a_model_that_supports_them_and_are_answered_honestly() -> None:
    with serve_in_process(models.drifty) as srv:
        files = ({"X": b"[1, -2]"}, {"X": b"[3, 4]"})
        asked = srv.stub.Run(pb.RunRequest(inputs=items(*files), detect_drift=True), timeout=10)
        assert [orjson.loads(o.output["drift"]) for o in asked.outputs] == [3.0, 7.0]
        assert asked.message == "Inference executed"
        quiet = srv.stub.Run(pb.RunRequest(inputs=items(*files)), timeout=10)
        assert [orjson.loads(o.output["drift"]) for o in quiet.outputs] == [-1.0, -1.0]
        explain = srv.stub.Run(pb.RunRequest(inputs=items(*files), explain=True), timeout=10)
        assert (
            "explain was asked for, but model 'drifty' does not support it (features.explanation_format is empty)"
            in explain.message
        )
        status = srv.stub.Status(pb.StatusRequest(), timeout=10)
        assert [i.filename for i in status.inputs] == ["X"] and status.features.drift_format == "score"
        sent = srv.stub.Run(pb.RunRequest(inputs=items({"X": b"[1, 2]", "detect_drift": b"[true]"})), timeout=10)
        assert "unknown input file(s) 'detect_drift'" in errors(sent)[0]


def test_shutdown_replies_then_asks_the_process_to_stop_once() -> None:
    with serve_in_process(models.adder) as srv:
        reply = srv.stub.Shutdown(pb.ShutdownRequest(), timeout=10)
        assert (reply.status_code, reply.status, reply.message) == (200, "OK", "Model Shutdown Successfully.")
        deadline = time.monotonic() + 5
        while not srv.shutdowns and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.shutdowns == [1]
        assert srv.stub.Shutdown(pb.ShutdownRequest(), timeout=10).status_code == 200
        time.sleep(0.1)
        assert srv.shutdowns == [1]


def test_health_watch_follows_the_model_load() -> None:
    with serve_in_process(models.Lazy, name="lazy") as srv:
        health = health_pb2_grpc.HealthStub(srv.channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="ModzyModel"), timeout=20)
        unknown = health.Watch(health_pb2.HealthCheckRequest(service="Nope"), timeout=20)
        try:
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            srv.stub.Status(pb.StatusRequest(), timeout=10)  # loads the model
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        finally:
            watch.cancel()
            unknown.cancel()


def test_health_and_reflection_on_the_omi_port() -> None:
    with serve_in_process(models.Lazy, models.Broken, name="lazy") as srv:
        health = health_pb2_grpc.HealthStub(srv.channel)
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == serving
        assert health.Check(health_pb2.HealthCheckRequest(service="ModzyModel"), timeout=5).status == not_serving
        assert srv.stub.Status(pb.StatusRequest(), timeout=10).model_info.model_name == "lazy"
        assert health.Check(health_pb2.HealthCheckRequest(service="ModzyModel"), timeout=5).status == serving
        try:
            health.Check(health_pb2.HealthCheckRequest(service="Nope"), timeout=5)
            raise AssertionError("expected NOT_FOUND")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
        reflect = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
        [answer] = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for s in answer.list_services_response.service}
        assert {"ModzyModel", "grpc.health.v1.Health"} <= names


def test_run_of_a_streaming_model_collects_its_yields_into_the_output_file() -> None:
    from omi_adapters.targets import load_target
    from tests.conftest import EXAMPLES

    markov = load_target(str(EXAMPLES / "markov" / "model.py"))[0]
    arrays = {"text_input": np.array([b"The river"], dtype=object), "max_tokens": np.array([9], dtype=np.int32)}
    want = [bytes(t[0]).decode() for t in markov.wait_ready()(**arrays)]
    with serve_in_process(markov) as srv:
        reply = srv.stub.Run(
            pb.RunRequest(inputs=items({"text_input": b"The river", "max_tokens": b"[9]"}, {"text_input": b"x"})),
            timeout=30,
        )
    assert errors(reply) == [None, None]
    assert json.loads(reply.outputs[0].output["text_output"]) == want
    assert len(json.loads(reply.outputs[1].output["text_output"])) == 64  # max_tokens left out
