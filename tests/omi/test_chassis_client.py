"""Wire compatibility with chassis' own published OMI messages (``chassisml-protobuf`` 4.0.0)."""

from __future__ import annotations

import textwrap

from google.protobuf import descriptor_pb2

from omi_adapters.protos import modzy_model_pb2 as pb
from tests.omi.chassis import run_client
from tests.servers import serve


def test_our_descriptor_is_chassis_descriptor_but_for_the_file_name() -> None:
    theirs = descriptor_pb2.FileDescriptorProto.FromString(
        bytes.fromhex(run_client("print(json.dumps(m.DESCRIPTOR.serialized_pb.hex()))"))
    )
    ours = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert (theirs.name, ours.name) == ("chassis/protos/v1/model.proto", "modzy_model.proto")
    theirs.ClearField("name")
    ours.ClearField("name")
    assert ours == theirs


CLIENT = textwrap.dedent(
    """
    import grpc

    channel = grpc.insecure_channel(sys.argv[1])
    def call(method, request, reply):
        return channel.unary_unary(
            "/ModzyModel/" + method, request_serializer=request.SerializeToString, response_deserializer=reply.FromString
        )(request, timeout=30)

    status = call("Status", m.StatusRequest(), m.StatusResponse)
    run = call("Run", m.RunRequest(inputs=[m.InputItem(input={"X": b"[[1, 2]]"}), m.InputItem(input={"X": b"?"})]),
               m.RunResponse)
    down = call("Shutdown", m.ShutdownRequest(), m.ShutdownResponse)
    print(json.dumps({
        "status": [status.status_code, status.message, status.model_info.model_name, status.features.batch_size],
        "run": [[o.success, {k: v.decode() for k, v in o.output.items()}] for o in run.outputs],
        "shutdown": [down.status_code, down.message],
    }))
    """
)


def test_a_client_built_on_chassis_messages_drives_omi_serve() -> None:
    with serve("tests/omi/models.py:adder", protocols=("omi",)) as srv:
        answer = run_client(CLIENT, srv.omi_url)
        assert answer["status"] == [200, "Model Initialized Successfully.", "adder", 1]
        assert answer["run"][0] == [True, {"Y": "[[2.0,3.0]]"}]
        assert answer["run"][1][0] is False and "is not valid JSON" in answer["run"][1][1]["error"]
        assert answer["shutdown"] == [200, "Model Shutdown Successfully."]
        assert srv.wait(30) == 0
