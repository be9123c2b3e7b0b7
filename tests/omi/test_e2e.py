"""End to end: ``omi serve`` in a subprocess, driven on its OMI port by a grpcio client of our proto."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import numpy as np
import orjson

from omi_adapters.protos import modzy_model_pb2 as pb
from omi_adapters.protos import modzy_model_pb2_grpc as pb_grpc
from tests.servers import Served, serve

MODELS = "tests/omi/models.py"


@contextmanager
def omi(name: str) -> Iterator[tuple[Served, pb_grpc.ModzyModelStub]]:
    with serve(f"{MODELS}:{name}", protocols=("omi",)) as srv, grpc.insecure_channel(srv.omi_url) as channel:
        yield srv, pb_grpc.ModzyModelStub(channel)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def run(stub: pb_grpc.ModzyModelStub, *files: dict[str, bytes], **flags: bool) -> pb.RunResponse:
    reply = stub.Run(pb.RunRequest(inputs=[pb.InputItem(input=f) for f in files], **flags), timeout=30)
    assert (reply.status_code, reply.status) == (200, "OK") and len(reply.outputs) == len(files)
    return reply


def test_status_run_and_shutdown_end_the_process_with_exit_0() -> None:
    with omi("adder") as (srv, stub):
        status = stub.Status(pb.StatusRequest(), timeout=30)
        assert (status.status_code, status.status, status.message) == (200, "OK", "Model Initialized Successfully.")
        assert (status.model_info.model_name, status.model_info.model_version) == ("adder", "2")
        assert status.model_info.model_author == "Ada <ada@example.com>" and status.description.summary == "Adds one."
        assert [(i.filename, i.max_size) for i in status.inputs] == [("X", "1K")]
        assert [(o.filename, o.media_type) for o in status.outputs] == [("Y", "application/json")]
        assert (status.resources.required_ram, status.timeout.run, status.features.batch_size) == ("128M", "20s", 1)
        assert stub.Status(pb.StatusRequest(), timeout=30).message == "Model Already Initialized."

        reply = run(
            stub,
            {"X": b"[[1, 2]]"},
            {"X": npy(np.array([[0.5, 1.5]], dtype=np.float32))},
            {"X": b'{"datatype": "FP32", "shape": [1, 1], "data": [9]}'},
            {"X": b"[[1, 2], [3]]"},
            {"X": b"[[1]]", "W": b"[1]"},
            {"X": b"[" + b"1," * 600 + b"1]"},
        )
        assert [orjson.loads(o.output["Y"]) if o.success else None for o in reply.outputs[:3]] == [
            [[2, 3]], [[1.5, 2.5]], [[10]]]  # fmt: skip
        assert [o.success for o in reply.outputs] == [True, True, True, False, False, False]
        assert "ragged" in reply.outputs[3].output["error"].decode()
        assert "unknown input file(s) 'W'" in reply.outputs[4].output["error"].decode()
        assert "larger than its max_size 1K" in reply.outputs[5].output["error"].decode()

        shutdown = stub.Shutdown(pb.ShutdownRequest(), timeout=30)
        assert (shutdown.status_code, shutdown.status, shutdown.message) == (200, "OK", "Model Shutdown Successfully.")
        assert srv.wait(30) == 0
        assert srv.output().count("OMI Shutdown") == 1


def test_items_are_batched_by_max_batch_size_and_a_bad_item_fails_alone() -> None:
    with omi("scaler") as (_, stub):
        assert stub.Status(pb.StatusRequest(), timeout=30).features.batch_size == 4
        reply = run(stub, *({"X": json.dumps([i, 0, 1]).encode()} for i in range(6)))
        assert [int(orjson.loads(o.output["BATCH"])) for o in reply.outputs] == [4, 4, 4, 4, 2, 2]
        assert [np.load(io.BytesIO(o.output["Y"])).tolist() for o in reply.outputs] == [[2 * i, 0, 2] for i in range(6)]
        mixed = run(
            stub, {"X": b"[1, 1, 1]"}, {"X": b"[-1, 1, 1]"}, {"X": npy(np.array([2.0, 2, 2]))}, {"X": b"[1, 1]"}
        )
        assert [o.success for o in mixed.outputs] == [True, False, True, False]
        assert mixed.outputs[1].output["error"] == b"X must not be negative"
        assert mixed.outputs[3].output["error"].startswith(b"input file 'X': expected FP64 [3] per item")


def test_raw_text_inputs_and_outputs() -> None:
    with omi("shout") as (_, stub):
        reply = run(
            stub,
            {"TEXT": b"raw words here"},
            {"TEXT": b'{"datatype": "BYTES", "data": ["json"]}'},
            {"TEXT": b"y" * 100},
        )
        assert [o.output.get("UPPER") for o in reply.outputs[:2]] == [b"RAW WORDS HERE", b"JSON"]
        assert reply.outputs[2].output["error"] == b"input file 'TEXT' is 100 bytes, larger than its max_size 64"


def test_a_model_that_fails_to_load_answers_500_and_the_server_stays_up() -> None:
    with omi("Broken") as (srv, stub):
        status = stub.Status(pb.StatusRequest(), timeout=30)
        assert (status.status_code, status.status) == (500, "Internal Server Error")
        assert "weights file is missing" in status.message and status.model_info.model_name == "broken"
        reply = run(stub, {"X": b"[1]"})
        assert not reply.outputs[0].success and b"weights file is missing" in reply.outputs[0].output["error"]
        assert stub.Status(pb.StatusRequest(), timeout=30).status_code == 500
        assert srv.proc.poll() is None
        assert srv.terminate() == 0


def test_shutdown_lets_in_flight_work_finish() -> None:
    with omi("patient") as (srv, stub):
        pending = stub.Run.future(pb.RunRequest(inputs=[pb.InputItem(input={"X": b"[0.5]"})]), timeout=30)
        time.sleep(0.2)
        assert stub.Shutdown(pb.ShutdownRequest(), timeout=30).status_code == 200
        try:  # a second Shutdown is answered, or refused once the server no longer takes calls
            assert stub.Shutdown(pb.ShutdownRequest(), timeout=30).status_code == 200
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), exc
        reply = pending.result()
        assert reply.outputs[0].success and orjson.loads(reply.outputs[0].output["Y"]) == [0.5]
        assert srv.wait(30) == 0
        assert srv.output().count("OMI Shutdown") == 1
