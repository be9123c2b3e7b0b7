"""Message sizes counted from tensor data agree with protobuf's own, within the fixed overhead."""

from __future__ import annotations

import numpy as np
import pytest

# tritonclient's messages have the OIP's fields: the project's own inference protos cannot share
# a test process with tritonclient's (both register the ``inference`` protobuf package).
from tritonclient.grpc import service_pb2 as pb

from omi_adapters.codecs.message_size import infer_message_bytes, omi_run_bytes
from omi_adapters.protos import modzy_model_pb2 as omi_pb


def _raw(n: int) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="X", datatype="FP32", shape=[n])
    message.raw_input_contents.append(np.zeros(n, dtype=np.float32).tobytes())
    return message


def _typed(n: int) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(model_name="m")
    tensor = message.outputs.add(name="Y", datatype="INT64", shape=[n])
    tensor.contents.int64_contents.extend(range(n))
    words = message.outputs.add(name="W", datatype="BYTES", shape=[2])
    words.contents.bytes_contents.extend([b"a" * n, b"b"])
    return message


@pytest.mark.parametrize("message", [_raw(0), _raw(10), _raw(100_000), _typed(3), _typed(50_000)])
def test_infer_message_bytes_bound_the_serialized_size(message: object) -> None:
    counted, actual = infer_message_bytes(message), message.ByteSize()  # type: ignore[attr-defined]
    # Typed values count 8 bytes each, as they are held once decoded; varints take fewer on the wire.
    assert actual <= counted * 1.5 + 64 and counted <= actual * 3 + 256, (counted, actual)


def test_omi_run_bytes_count_the_files() -> None:
    request = omi_pb.RunRequest(inputs=[omi_pb.InputItem(input={"X": b"x" * 10_000}) for _ in range(3)])
    reply = omi_pb.RunResponse(outputs=[omi_pb.OutputItem(output={"Y": b"y" * 5_000}, success=True)])
    assert 30_000 <= omi_run_bytes(request) <= request.ByteSize() + 128
    assert 5_000 <= omi_run_bytes(reply) <= reply.ByteSize() + 128


def test_a_shape_larger_than_its_data_is_counted_by_the_data() -> None:
    message = _raw(10)
    message.inputs[0].shape[:] = [2**40]  # decoding refuses it; it must not look like 4 TiB in flight
    assert infer_message_bytes(message) < 1024
