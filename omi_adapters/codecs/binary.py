"""The binary tensor data extension (Triton's ``extension_binary_data.md``).

A body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the tensors'
raw bytes, in the order of the tensors in the JSON. Responses are built as a list of chunks
(the JSON header, then one memoryview per binary output) so that large outputs are sent
without being joined or copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from omi_adapters.codecs.oip_json import (
    BinaryReader,
    is_text,
    loads,
    output_to_dict,
    request_from_dict,
    response_to_dict,
)
from omi_adapters.codecs.tensors import from_raw, to_raw
from omi_adapters.errors import InvalidInputError
from omi_adapters.types import WIRE_DTYPES, InferenceRequest, InferenceResponse, InputTensor

__all__ = ["HEADER", "decode_raw_request", "decode_request", "encode_response", "parse_header_length", "wants_binary"]

#: The HTTP header naming the JSON part's length (lower case, as ASGI servers deliver it).
HEADER = "inference-header-content-length"


def parse_header_length(value: str | bytes, body_size: int) -> int:
    """Parse ``Inference-Header-Content-Length`` and check it against the body's size."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not text.isdigit() or not text.isascii():
        raise InvalidInputError(f"Inference-Header-Content-Length must be a non-negative integer, got {text!r}")
    length = int(text)
    if length > body_size:
        raise InvalidInputError(f"Inference-Header-Content-Length {length} exceeds the body's {body_size} bytes")
    return length


def decode_request(body: bytes | memoryview, header_length: int) -> InferenceRequest:
    """Decode a body whose first ``header_length`` bytes are the JSON header (length > 0)."""
    view = memoryview(body)
    header = loads(view[:header_length], "the JSON header (Inference-Header-Content-Length bytes)")
    return request_from_dict(header, BinaryReader(view[header_length:]))


def decode_raw_request(body: bytes | memoryview, name: str, datatype: str, shape: tuple[int, ...]) -> InferenceRequest:
    """Decode a raw binary request (``Inference-Header-Content-Length: 0``) for a one-input model.

    The body is the bytes of that single input. BYTES inputs take shape ``[1]``; other inputs
    may have at most one variable dimension, which the body's size determines (Triton's raw binary request).
    """
    where = f"input '{name}'"
    if datatype == "BYTES":
        shape = (1,) * len(shape) if shape else (1,)
        data = np.empty(1, dtype=object)
        data[0] = bytes(body)
        data = data.reshape(shape)
    else:
        shape = _infer_shape(datatype, shape, len(body), where)
        data = from_raw(datatype, memoryview(body), shape, where)
    tensor = InputTensor(name, datatype, shape, data)
    return InferenceRequest([tensor], None, {"binary_data_output": True})


def _infer_shape(datatype: str, declared: tuple[int, ...], size: int, where: str) -> tuple[int, ...]:
    itemsize = WIRE_DTYPES[datatype].itemsize
    variable = [i for i, d in enumerate(declared) if d == -1]
    if len(variable) > 1:
        raise InvalidInputError(
            f"{where}: a raw binary request needs at most one variable dimension, shape is {list(declared)}"
        )
    fixed = 1
    for d in declared:
        if d != -1:
            fixed *= d
    if not variable:
        return declared
    step = fixed * itemsize
    if step == 0 or size % step:
        raise InvalidInputError(
            f"{where}: {size} raw bytes do not fill whole {datatype} rows of shape {list(declared)}"
        )
    return tuple(size // step if d == -1 else d for d in declared)


def wants_binary(request: InferenceRequest) -> dict[str, bool]:
    """Which outputs go back as binary: ``"*"`` is ``binary_data_output``, and each output the
    request names with a ``binary_data`` flag has that flag (the others follow ``"*"``)."""
    default = bool(request.parameters.get("binary_data_output", False))
    chosen: dict[str, bool] = {}
    for output in request.outputs or ():
        flag = output.parameters.get("binary_data")
        if flag is not None:
            chosen[output.name] = bool(flag)
    return {"*": default, **chosen}


def encode_response(
    response: InferenceResponse, binary: dict[str, bool]
) -> tuple[list[bytes | memoryview], int | None]:
    """Encode a response; returns the body chunks and the JSON header length (None: JSON only).

    A BYTES output that is not UTF-8 text cannot go in JSON (see :func:`oip_json.output_to_dict`).
    When the request asked for some output as binary, its client reads binary outputs, so such an
    output goes as binary too, unless the request asked for it as JSON by name
    (``"binary_data": false``); otherwise the request is refused, naming the output and the fix.
    (Triton's server writes such bytes into the JSON as they are, which tritonclient fails to read.)
    """
    default = binary.get("*", False)
    reads_binary = any(binary.values())
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for output in response.outputs:
        chosen = binary.get(output.name)
        as_binary = default if chosen is None else chosen
        if not as_binary and chosen is None and reads_binary and not is_text(output):
            as_binary = True
        if as_binary:
            raw = to_raw(output.datatype, output.data)
            obj: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
            obj["parameters"] = {**output.parameters, "binary_data_size": len(raw)}
            outputs.append(obj)
            chunks.append(raw)
        else:
            outputs.append(output_to_dict(output))
    header = orjson.dumps(response_to_dict(response, outputs), option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return [header], None
    return [header, *chunks], len(header)
