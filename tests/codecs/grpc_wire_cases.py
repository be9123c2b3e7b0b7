"""gRPC ModelInfer's own wire handling (omi_adapters.codecs.oip_grpc): replies serialized with
their raw contents appended by hand, requests with their raw contents sliced out in place, and
ModelStreamInfer's replies framed by hand.

Run by ``test_grpc_wire.py`` in a process of its own: the project's ``inference`` protobuf
package cannot share a process with tritonclient's, which other tests import."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omi_adapters.codecs import oip_grpc
from omi_adapters.errors import InvalidInputError
from omi_adapters.protos import open_inference_grpc_pb2 as pb
from omi_adapters.types import InferenceResponse, OutputTensor
from tests.codecs.test_roundtrip import arrays


@settings(max_examples=200, deadline=None)
@given(st.lists(arrays(), min_size=0, max_size=3), st.booleans(), st.booleans())
def test_serialized_grpc_reply_is_the_message_protobuf_writes(cases, typed, with_id) -> None:
    """ModelInfer's reply, written with the raw contents appended by hand, parses to the very
    message protobuf itself would have serialized."""
    outputs = [
        OutputTensor(name=f"out{i}", datatype=datatype, shape=array.shape, data=array, parameters={"k": i})
        for i, (datatype, array) in enumerate(cases)
    ]
    response = InferenceResponse("m", "2", outputs, id="req-7" if with_id else None, parameters={"p": True})
    wire = oip_grpc.serialize_response(response, typed=typed)
    expected = oip_grpc.encode_response(response, typed=typed)
    assert pb.ModelInferResponse.FromString(wire) == expected
    assert len(wire) == len(expected.SerializeToString())


@settings(max_examples=200, deadline=None)
@given(st.lists(arrays(), min_size=0, max_size=3), st.booleans(), st.booleans(), st.sampled_from([None, True, False]))
def test_a_stream_reply_is_the_message_protobuf_writes(cases, typed, final, carried) -> None:
    """ModelStreamInfer's reply, framed by hand, parses to the ModelStreamInferResponse protobuf
    would have built, its triton_final_response set over any the response carried."""
    outputs = [OutputTensor(name=f"out{i}", datatype=d, shape=a.shape, data=a) for i, (d, a) in enumerate(cases)]
    parameters = {} if carried is None else {oip_grpc.FINAL: carried, "other": 1}
    response = InferenceResponse("m", "2", outputs, id="req-9", parameters=parameters)
    wire = oip_grpc.stream_reply(oip_grpc.serialize_response(response, typed=typed), final=final)
    expected = pb.ModelStreamInferResponse()
    expected.infer_response.CopyFrom(oip_grpc.encode_response(response, typed=typed))
    expected.infer_response.parameters[oip_grpc.FINAL].bool_param = final
    parsed = pb.ModelStreamInferResponse.FromString(wire)
    assert parsed == expected
    assert parsed.infer_response.parameters[oip_grpc.FINAL].bool_param is final


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=3),
    st.lists(st.sampled_from(["X", "Y", "Z"]), max_size=3),
    st.text(max_size=8),
    st.booleans(),
)
def test_raw_contents_are_sliced_out_of_a_grpc_request_in_place(raw, names, request_id, zero_copy) -> None:
    """parse_request gives the message protobuf parses, its raw contents as views of the wire bytes."""
    message = pb.ModelInferRequest(
        model_name="m", model_version="3", id=request_id, raw_input_contents=raw,
        inputs=[pb.ModelInferRequest.InferInputTensor(name=n, datatype="UINT8", shape=[1, 2]) for n in names],
    )  # fmt: skip
    message.parameters["k"].int64_param = 5
    message.outputs.add(name="Y")
    wire = message.SerializeToString()
    parsed, views = oip_grpc.parse_request(wire, zero_copy_from=0 if zero_copy else len(wire) + 1)
    if not zero_copy:
        assert views is None and parsed == message
        return
    assert [bytes(v) for v in views] == raw
    assert all(v.obj is wire for v in views)  # views of the wire bytes, not copies
    message.ClearField("raw_input_contents")
    assert parsed == message


@pytest.mark.parametrize(
    "wire",
    [b"\x0a\x05ab", b"\x3a\xff\xff\xff\xff\x0f", b"\x0b", b"\x80", b"\x0a\x02ab\x3a\x05abc", b"\xff" * 11],
    ids=["truncated string", "raw longer than the message", "group wire type", "truncated varint",
         "truncated raw", "overlong varint"],
)  # fmt: skip
def test_a_malformed_grpc_request_is_invalid_input_whichever_way_it_is_parsed(wire) -> None:
    for zero_copy_from in (0, len(wire) + 1):
        with pytest.raises(InvalidInputError, match="not a ModelInferRequest"):
            oip_grpc.parse_request(wire, zero_copy_from)
