"""OIP gRPC messages <-> :class:`InferenceRequest` / :class:`InferenceResponse` (the OIP's gRPC
protocol, ``grpc_predict_v2.proto``), beside REST's :mod:`omi_adapters.codecs.oip_json`.

Raw contents (``raw_input_contents``) are decoded with ``np.frombuffer``, without copying unless
they are misaligned (:func:`~omi_adapters.codecs.tensors.from_raw`); typed contents through
:mod:`omi_adapters.codecs.typed_contents`. Replies use raw contents unless the request sent typed
contents and every output has a typed field (FP16/BF16 never do: the OIP's gRPC protocol has no
field for them). Pure functions of protobuf messages: no server here.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from omi_adapters.codecs.tensors import check_shape, from_raw, to_raw
from omi_adapters.codecs.typed_contents import CONTENTS_FIELD, from_typed, to_typed
from omi_adapters.errors import InvalidInputError
from omi_adapters.protos import open_inference_grpc_pb2 as pb
from omi_adapters.types import (
    ARRAY_DTYPES,
    DATATYPES,
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    Parameters,
    RequestedOutput,
)

__all__ = [
    "FINAL", "decode_request", "encode_response", "parameters_of", "parse_request", "serialize_response",
    "set_parameters", "stream_reply",
]  # fmt: skip

#: Triton's reserved response parameter of its stream: this is the request's last response.
FINAL = "triton_final_response"

#: The wire tag of ``ModelInferResponse.raw_output_contents`` (field 6, length-delimited).
_RAW_OUTPUT_TAG = bytes([6 << 3 | 2])
#: The field number of ``ModelInferRequest.raw_input_contents``.
_RAW_INPUT_FIELD = 7
#: Messages from this size on have their raw contents sliced out of the wire bytes (see :func:`parse_request`).
ZERO_COPY_BYTES = 64 * 1024


def parse_request(
    data: bytes, zero_copy_from: int = ZERO_COPY_BYTES
) -> tuple[pb.ModelInferRequest, list[memoryview] | None]:
    """A serialized ``ModelInferRequest``, and its raw contents as views of ``data`` (None: in the message).

    protobuf copies every raw contents entry into the message it parses, and again each time
    it is read. A message of ``zero_copy_from`` bytes or more is walked field by field instead
    (the protobuf wire format): its ``raw_input_contents`` entries become memoryviews of
    ``data``, and only its other fields (names, shapes, parameters) are parsed by protobuf.
    Smaller messages are parsed whole.

    Raises:
        InvalidInputError: ``data`` is not a ``ModelInferRequest``.
    """
    try:
        if len(data) < zero_copy_from:
            return pb.ModelInferRequest.FromString(data), None
        view = memoryview(data)
        fields: list[memoryview] = []
        raw: list[memoryview] = []
        end = len(view)
        at = 0
        while at < end:
            start = at
            key, at = _read_varint(view, at)
            kind = key & 7
            if kind == 2:  # length-delimited: every field of this message but unknown ones
                length, value = _read_varint(view, at)
                at = value + length
                if at <= end and key >> 3 == _RAW_INPUT_FIELD:
                    raw.append(view[value:at])
                    continue
            elif kind == 0:
                _, at = _read_varint(view, at)
            elif kind in (1, 5):
                at += 8 if kind == 1 else 4
            else:
                raise DecodeError(f"wire type {kind}")
            if at > end:
                raise DecodeError("truncated field")
            fields.append(view[start:at])
        return pb.ModelInferRequest.FromString(b"".join(fields)), raw
    except DecodeError as exc:
        raise InvalidInputError(f"the message is not a ModelInferRequest ({exc})") from None


def _read_varint(view: memoryview, at: int) -> tuple[int, int]:
    """The base-128 varint at ``view[at]`` and the offset after it."""
    value = shift = 0
    end = len(view)
    while True:
        if at >= end or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def parameters_of(params: Any) -> Parameters:
    """A protobuf ``map<string, InferParameter>`` as plain parameters."""
    out: Parameters = {}
    if not params:
        return out  # most maps of most requests: no iteration over protobuf's map
    for key, value in params.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            out[key] = getattr(value, choice)
    return out


def set_parameters(target: Any, params: Parameters) -> None:
    """Fill a protobuf ``map<string, InferParameter>`` from plain parameters."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            if value < 0 or value < 2**63:
                slot.int64_param = value
            else:
                slot.uint64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)


def decode_request(message: pb.ModelInferRequest, raw_contents: list[memoryview] | None = None) -> InferenceRequest:
    """A ``ModelInferRequest`` as an :class:`InferenceRequest`, checking every field.

    ``raw_contents``: the message's raw contents when :func:`parse_request` took them out of it.
    """
    raw: Any = message.raw_input_contents if raw_contents is None else raw_contents
    # Slices, not iteration: protobuf's repeated fields iterate slowly (a list of 2 dims: 1.3 µs
    # against 0.5 µs for the slice).
    tensors = message.inputs[:]
    if raw and len(raw) != len(tensors):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(tensors)} inputs; it needs one per input"
        )
    inputs = []
    for index, tensor in enumerate(tensors):
        if not tensor.name:
            raise InvalidInputError(f"inputs[{index}]: 'name' must not be empty")
        where = f"input '{tensor.name}'"
        if tensor.datatype not in ARRAY_DTYPES:  # a dict: one hash, not 14 comparisons
            raise InvalidInputError(
                f"{where}: unknown datatype {tensor.datatype!r}; expected one of {', '.join(DATATYPES)}"
            )
        shape = check_shape(tensor.shape[:], where)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInputError(f"{where}: has both contents and raw_input_contents; send one of them")
            data = from_raw(tensor.datatype, memoryview(raw[index]), shape, where)
        else:
            field = CONTENTS_FIELD.get(tensor.datatype)
            values = getattr(tensor.contents, field) if field else ()
            data = from_typed(tensor.datatype, values, shape, where)
        inputs.append(InputTensor(tensor.name, tensor.datatype, shape, data, parameters_of(tensor.parameters)))
    requested = message.outputs
    outputs = [RequestedOutput(o.name, parameters_of(o.parameters)) for o in requested[:]] if requested else None
    return InferenceRequest(inputs, message.id or None, parameters_of(message.parameters), outputs)


def encode_response(response: InferenceResponse, *, typed: bool) -> pb.ModelInferResponse:
    """An :class:`InferenceResponse` as a ``ModelInferResponse`` (raw contents unless ``typed``)."""
    typed = typed and all(o.datatype in CONTENTS_FIELD for o in response.outputs)
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version or "", id=response.id or ""
    )
    set_parameters(message.parameters, response.parameters)
    for output in response.outputs:
        tensor = message.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        set_parameters(tensor.parameters, output.parameters)
        if typed:
            field, values = to_typed(output.datatype, output.data)
            getattr(tensor.contents, field).extend(values)
        else:
            message.raw_output_contents.append(bytes(to_raw(output.datatype, output.data)))
    return message


def serialize_response(response: InferenceResponse, *, typed: bool) -> bytes:
    """:func:`encode_response`, serialized: the bytes of the ``ModelInferResponse`` on the wire.

    Raw contents are not copied into the message (protobuf would copy each twice, into the
    message and out again): the message is serialized without them and each output's raw bytes
    follow as a ``raw_output_contents`` field, which is the same message on the wire (protobuf
    encodes a repeated field as its entries in order, wherever they fall). One copy in all, the
    final join.
    """
    if typed and all(o.datatype in CONTENTS_FIELD for o in response.outputs):
        return encode_response(response, typed=True).SerializeToString()
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version or "", id=response.id or ""
    )
    if response.parameters:  # reading a map field builds its wrapper: not for an empty one
        set_parameters(message.parameters, response.parameters)
    parts: list[bytes | memoryview] = [b""]
    tensors = message.outputs
    for output in response.outputs:
        tensor = tensors.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if output.parameters:
            set_parameters(tensor.parameters, output.parameters)
        raw = to_raw(output.datatype, output.data)
        parts += (_RAW_OUTPUT_TAG, _varint(len(raw)), raw)
    parts[0] = message.SerializeToString()
    return b"".join(parts)


def _final_entry(final: bool) -> bytes:
    message = pb.ModelInferResponse()
    message.parameters[FINAL].bool_param = final
    return message.SerializeToString()


#: ``triton_final_response`` as the one ``parameters`` entry of a serialized ``ModelInferResponse``.
_FINAL_ENTRY = {True: _final_entry(True), False: _final_entry(False)}
#: The wire tag of ``ModelStreamInferResponse.infer_response`` (length-delimited).
_STREAM_RESPONSE_TAG = bytes([pb.ModelStreamInferResponse.DESCRIPTOR.fields_by_name["infer_response"].number << 3 | 2])


def stream_reply(infer_response: bytes, *, final: bool) -> bytes:
    """The bytes of a ``ModelStreamInferResponse`` (Triton's stream) whose ``infer_response`` is
    the serialized ``ModelInferResponse`` ``infer_response`` with ``triton_final_response`` set
    to ``final``.

    The parameter is appended to the message as one more ``parameters`` entry: a map entry may
    come anywhere in a message, and a parser keeps the last entry of a key, so it stands for
    whatever the response carried under that name.
    """
    entry = _FINAL_ENTRY[final]
    return b"".join((_STREAM_RESPONSE_TAG, _varint(len(infer_response) + len(entry)), infer_response, entry))


def _varint(value: int) -> bytes:
    """``value`` as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
