"""Generated ``ModelInferRequest`` messages through the gRPC servicer's decode, predict and
encode, in process: each one either succeeds or fails with an error of the error tree, which the
servicer maps to a gRPC status naming the problem; nothing else (an INTERNAL) may escape.

Run by ``test_fuzz_grpc.py`` in a process of its own: the project's ``inference`` protobuf
package cannot share a process with tritonclient's, which the other serving tests import."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omi_adapters.codecs.oip_grpc import decode_request, encode_response
from omi_adapters.codecs.typed_contents import CONTENTS_FIELD
from omi_adapters.errors import OmiError
from omi_adapters.protos import open_inference_grpc_pb2 as pb
from omi_adapters.types import DATATYPES, WIRE_DTYPES
from tests.serving.fuzz_models import PLANE, TARGETS

FIELD_VALUES: dict[str, Any] = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=6),
}


@st.composite
def requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    model, name, datatype, rank = draw(st.sampled_from(TARGETS))
    if draw(st.booleans()):
        datatype = draw(st.sampled_from([*DATATYPES, "FP33", ""]))
    shape = draw(
        st.lists(st.integers(0, 3), min_size=rank, max_size=rank) | st.lists(st.integers(-2, 2**40), max_size=3)
    )
    message = pb.ModelInferRequest(model_name=draw(st.sampled_from([model, model, "nope"])))
    tensor = message.inputs.add(name=draw(st.sampled_from([name, name, "Z", ""])), datatype=datatype, shape=shape)
    count = int(np.prod(shape)) if shape and all(0 <= d <= 3 for d in shape) else 2
    if draw(st.booleans()):  # raw contents: the right size, or any bytes
        size = count * (WIRE_DTYPES[datatype].itemsize if datatype in WIRE_DTYPES else 4)
        if datatype == "BYTES":
            raw = b"".join(
                len(item).to_bytes(4, "little") + item
                for item in draw(st.lists(st.binary(max_size=4), min_size=count, max_size=count))
            )
        else:
            raw = draw(st.binary(min_size=size, max_size=size))
        message.raw_input_contents.append(draw(st.just(raw) | st.binary(max_size=24)))
        if draw(st.integers(0, 9)) == 0:
            message.raw_input_contents.append(b"")  # one too many
    else:  # typed contents: the datatype's own field, or another one
        field = CONTENTS_FIELD.get(datatype) if draw(st.booleans()) else None
        field = field or draw(st.sampled_from(sorted(FIELD_VALUES)))
        values = draw(
            st.lists(FIELD_VALUES[field], min_size=count, max_size=count) | st.lists(FIELD_VALUES[field], max_size=4)
        )
        getattr(tensor.contents, field).extend(values)
    if draw(st.booleans()):
        message.outputs.add(name=draw(st.sampled_from(["Y", "OUT", "Q"])))
    return message


async def _infer(message: pb.ModelInferRequest) -> str:
    try:
        model = PLANE.get(message.model_name, message.model_version or None)
        response = await PLANE.run(model, decode_request(message))
        encode_response(response, typed=not message.raw_input_contents)
    except OmiError as exc:
        return type(exc).__name__
    return "ok"


@pytest.mark.timeout(300)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=requests())
def test_generated_grpc_requests_fail_only_with_errors_of_the_tree(message: pb.ModelInferRequest) -> None:
    event(asyncio.run(_infer(message)))
