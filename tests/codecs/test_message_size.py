"""OMI Run message sizes counted from their files agree with protobuf's own, within the fixed overhead."""

from __future__ import annotations

from omi_adapters.codecs.message_size import omi_run_bytes
from omi_adapters.protos import modzy_model_pb2 as omi_pb


def test_omi_run_bytes_count_the_files() -> None:
    request = omi_pb.RunRequest(inputs=[omi_pb.InputItem(input={"X": b"x" * 10_000}) for _ in range(3)])
    reply = omi_pb.RunResponse(outputs=[omi_pb.OutputItem(output={"Y": b"y" * 5_000}, success=True)])
    assert 30_000 <= omi_run_bytes(request) <= request.ByteSize() + 128
    assert 5_000 <= omi_run_bytes(reply) <= reply.ByteSize() + 128
