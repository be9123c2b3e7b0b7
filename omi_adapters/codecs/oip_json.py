"""OIP REST JSON <-> :class:`InferenceRequest` / :class:`InferenceResponse` (the OIP REST protocol, "Inference Request JSON Object" and "Inference Response JSON Object").

Decoding goes straight from orjson's lists to numpy, without Pydantic. Input tensors whose
parameters carry ``binary_data_size`` take their bytes from a :class:`BinaryReader` (the
binary tensor data extension); see :mod:`omi_adapters.codecs.binary`. Bodies of at least
:data:`~omi_adapters.codecs.json_numbers.MIN_BODY_BYTES` have their large numeric arrays decoded
in chunks by :mod:`omi_adapters.codecs.json_numbers`, with the same results and errors.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from omi_adapters.codecs import json_numbers
from omi_adapters.codecs.tensors import (
    MAX_DIMS,
    bf16_to_float32,
    check_shape,
    element_count,
    float32_to_bf16,
    from_raw,
    kind_of,
    to_float,
)
from omi_adapters.dtypes import check_range, small_floats
from omi_adapters.errors import InvalidInputError
from omi_adapters.types import (
    ARRAY_DTYPES,
    DATATYPES,
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    OutputTensor,
    Parameters,
    RequestedOutput,
)

__all__ = [
    "BinaryReader",
    "data_from_json",
    "decode_request",
    "encode_response",
    "is_text",
    "loads",
    "not_text_message",
    "output_to_dict",
    "request_from_dict",
    "response_to_dict",
]

_PARAMETER_TYPES = (str, int, float, bool)


class BinaryReader:
    """Hands out the binary section of a request, in the order of the tensors in the JSON."""

    __slots__ = ("_offset", "_view")

    def __init__(self, data: bytes | memoryview) -> None:
        self._view = memoryview(data)
        self._offset = 0

    def take(self, size: int, where: str) -> memoryview:
        """The next ``size`` bytes; refuses sizes larger than what remains."""
        remaining = len(self._view) - self._offset
        if size > remaining:
            raise InvalidInputError(
                f"{where}: binary_data_size {size} exceeds the {remaining} binary bytes that remain"
            )
        chunk = self._view[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def finish(self) -> None:
        """Refuse binary bytes that no tensor claimed."""
        left = len(self._view) - self._offset
        if left:
            raise InvalidInputError(f"{left} bytes of binary data are not claimed by any input's binary_data_size")


def loads(document: bytes | memoryview, what: str = "request body") -> Any:
    """Parse JSON, turning every syntax or encoding error into an invalid-input error."""
    try:
        return orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if "UTF-8" in str(exc):
            # JSON is text: BYTES that are not UTF-8 have two unambiguous ways in.
            hint = (
                "; BYTES data that is not UTF-8 text goes as binary data (binary_data_size, the binary "
                'tensor data extension) or as base64 strings with "parameters": {"content_type": "base64"}'
            )
        raise InvalidInputError(f"{what} is not valid JSON: {exc}{hint}") from None


def decode_request(document: bytes | memoryview) -> InferenceRequest:
    """Decode a JSON-only OIP inference request body.

    A large body's large numeric arrays are decoded in chunks (bounded memory, the GIL released
    between chunks); anything unusual about them falls back to parsing the whole body at once.
    """
    if len(document) >= json_numbers.MIN_BODY_BYTES:
        obj = json_numbers.loads_large(document)
        if obj is not None:
            return request_from_dict(obj)
    return request_from_dict(loads(document))


def request_from_dict(obj: Any, binary: BinaryReader | None = None) -> InferenceRequest:
    """Build an :class:`InferenceRequest` from a parsed ``$inference_request`` object."""
    if not isinstance(obj, dict):
        raise InvalidInputError(f"an inference request must be a JSON object, got {kind_of(obj)}")
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"'id' must be a string, got {kind_of(request_id)}")
    parameters = _parameters(obj.get("parameters"), "request")
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidInputError(
            "missing 'inputs'" if raw_inputs is None else f"'inputs' must be a list, got {kind_of(raw_inputs)}"
        )
    inputs = [_input(item, index, binary) for index, item in enumerate(raw_inputs)]
    if binary is not None:
        binary.finish()
    outputs = None
    raw_outputs = obj.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInputError(f"'outputs' must be a list, got {kind_of(raw_outputs)}")
        outputs = [_requested_output(item, index) for index, item in enumerate(raw_outputs)]
    return InferenceRequest(inputs, request_id, parameters, outputs)


def _input(obj: Any, index: int, binary: BinaryReader | None) -> InputTensor:
    if not isinstance(obj, dict):
        raise InvalidInputError(f"inputs[{index}] must be an object, got {kind_of(obj)}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"inputs[{index}]: 'name' must be a non-empty string, got {kind_of(name)}")
    where = f"input '{name}'"
    datatype = obj.get("datatype")
    if not isinstance(datatype, str) or datatype not in ARRAY_DTYPES:  # a dict: one hash, not 14 comparisons
        raise InvalidInputError(
            f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
            if isinstance(datatype, str)
            else f"{where}: 'datatype' must be a string, got {kind_of(datatype)}"
        )
    if "shape" not in obj:
        raise InvalidInputError(f"{where}: missing 'shape'")
    shape = check_shape(obj["shape"], where)
    parameters = _parameters(obj.get("parameters"), where)
    size = parameters.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInputError(f"{where}: binary_data_size must be a non-negative integer, got {kind_of(size)}")
        if "data" in obj:
            raise InvalidInputError(f"{where}: has both 'data' and binary_data_size")
        if binary is None:
            raise InvalidInputError(
                f"{where}: binary_data_size is set but the request has no binary data "
                "(no Inference-Header-Content-Length header)"
            )
        data = from_raw(datatype, binary.take(size, where), shape, where)
    else:
        if "data" not in obj:
            raise InvalidInputError(f"{where}: missing 'data'")
        data = data_from_json(datatype, obj["data"], shape, where, parameters.get("content_type") == "base64")
    return InputTensor(name, datatype, shape, data, parameters)


def _requested_output(obj: Any, index: int) -> RequestedOutput:
    if not isinstance(obj, dict):
        raise InvalidInputError(f"outputs[{index}] must be an object, got {kind_of(obj)}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"outputs[{index}]: 'name' must be a non-empty string, got {kind_of(name)}")
    return RequestedOutput(name, _parameters(obj.get("parameters"), f"output '{name}'"))


def _parameters(obj: Any, where: str) -> Parameters:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where}: 'parameters' must be an object, got {kind_of(obj)}")
    for key, value in obj.items():
        if not isinstance(value, _PARAMETER_TYPES):
            raise InvalidInputError(
                f"{where}: parameter '{key}' must be a string, number or boolean, got {kind_of(value)}"
            )
    return obj


def data_from_json(
    datatype: str, data: Any, shape: tuple[int, ...], where: str, base64_bytes: bool = False
) -> np.ndarray[Any, Any]:
    """Decode a JSON ``data`` value (flat or nested as ``shape``) into an array of ``datatype``."""
    if not isinstance(data, list):
        if isinstance(data, json_numbers.LargeData):
            return data.result(where)
        raise InvalidInputError(f"{where}: 'data' must be a list, got {kind_of(data)}")
    count = element_count(shape, where)
    if datatype == "BYTES":
        return _bytes_from_json(data, shape, count, where, base64_bytes)
    if len(data) == count:  # flat
        small = small_floats(datatype, data)
        if small is not None:
            return small.reshape(shape)
    try:
        array = np.array(data)
        if array.dtype.kind in "fO" and ARRAY_DTYPES[datatype].kind in "iu":
            # Integers past int64 (UINT64's upper half) make numpy fall back to float or
            # object: keep them exact as Python ints and let the range check judge them.
            exact = np.array(data, dtype=object)
            if all(type(v) is int for v in exact.reshape(-1)):
                array = exact
    except (ValueError, TypeError):
        if _depth(data) > MAX_DIMS:
            raise InvalidInputError(f"{where}: 'data' is nested deeper than {MAX_DIMS} levels") from None
        raise InvalidInputError(f"{where}: 'data' is ragged: nested lists of unequal lengths") from None
    # Nested data must follow the shape, except empty data, whose nesting cannot show every dim.
    if array.ndim > 1 and array.shape != shape and array.size + count:
        raise InvalidInputError(
            f"{where}: 'data' is nested as {list(array.shape)}, which does not match shape {list(shape)}"
        )
    if array.size != count:
        raise InvalidInputError(f"{where}: 'data' has {array.size} elements, shape {list(shape)} needs {count}")
    return _numbers(datatype, array, where).reshape(shape)


def _depth(data: Any) -> int:
    """How deep a list nests along its first elements."""
    depth = 0
    while isinstance(data, list) and depth <= MAX_DIMS:
        depth += 1
        data = data[0] if data else None
    return depth


def _numbers(datatype: str, array: np.ndarray[Any, Any], where: str) -> np.ndarray[Any, Any]:
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(ARRAY_DTYPES[datatype])
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInputError(f"{where}: BOOL data must be true/false, got {_describe_kind(array)}")
        return array
    target = ARRAY_DTYPES[datatype]
    if target.kind in "iu":
        if kind not in "iu" and not (kind == "O" and all(type(v) is int for v in array.reshape(-1))):
            raise InvalidInputError(f"{where}: {datatype} data must be integers, got {_describe_kind(array)}")
        check_range(array, datatype, where)
        return array.astype(target)
    if kind not in "iuf":
        raise InvalidInputError(f"{where}: {datatype} data must be numbers, got {_describe_kind(array)}")
    return to_float(datatype, array, where)


def _describe_kind(array: np.ndarray[Any, Any]) -> str:
    kind = array.dtype.kind
    if kind == "b":
        return "booleans"
    if kind == "f":
        return "floating-point numbers"
    if kind in "iu":
        return "integers"
    if kind in "US":
        return "strings"
    return "mixed or out-of-range values"


def _bytes_from_json(
    data: list[Any], shape: tuple[int, ...], count: int, where: str, b64: bool
) -> np.ndarray[Any, Any]:
    flat: list[Any] = []
    nested = bool(data) and isinstance(data[0], list)
    if nested:
        _flatten(data, shape, 0, flat, where)
    else:
        flat = data
    if len(flat) != count:
        raise InvalidInputError(f"{where}: 'data' has {len(flat)} elements, shape {list(shape)} needs {count}")
    out = np.empty(count, dtype=object)
    for index, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidInputError(f"{where}: BYTES elements must be strings, element {index} is {kind_of(item)}")
        if b64:
            try:
                out[index] = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInputError(f"{where}: element {index} is not valid base64") from None
        else:
            out[index] = item.encode("utf-8", "surrogatepass")
    return out.reshape(shape)


def _flatten(data: list[Any], shape: tuple[int, ...], depth: int, out: list[Any], where: str) -> None:
    if depth >= len(shape) or len(data) != shape[depth]:
        raise InvalidInputError(f"{where}: nested 'data' does not match shape {list(shape)}")
    for item in data:
        if depth + 1 < len(shape):
            if not isinstance(item, list):
                raise InvalidInputError(f"{where}: nested 'data' does not match shape {list(shape)}")
            _flatten(item, shape, depth + 1, out, where)
        else:
            out.append(item)


def output_to_dict(output: OutputTensor, *, base64_bytes: bool = False) -> dict[str, Any]:
    """A ``$response_output`` whose ``data`` orjson serializes (numpy arrays, flat).

    JSON carries BYTES as strings, so a BYTES output holding an element that is not UTF-8 text
    cannot go in it: Triton's clients and KServe's would read something else than the model
    returned. It raises :class:`InvalidInputError` naming the output and the fix (ask for it as
    binary data), unless ``base64_bytes``: then every element of such an output is base64, tagged
    ``"content_type": "base64"`` (for a reader that knows the tag, such as ``omi predict``'s).
    """
    obj: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
    parameters = output.parameters
    data = output.data
    if output.datatype == "BYTES":
        items = [bytes(item) for item in data.reshape(-1)]
        try:
            obj["data"] = [item.decode("utf-8") for item in items]
        except UnicodeDecodeError:
            if not base64_bytes:
                raise InvalidInputError(not_text_message(output.name, items)) from None
            obj["data"] = [base64.b64encode(item).decode("ascii") for item in items]
            parameters = {**parameters, "content_type": "base64"}
    else:
        if output.datatype == "BF16":
            data = bf16_to_float32(float32_to_bf16(data))
        obj["data"] = data.ravel()  # flat and C-contiguous, as orjson writes arrays (a view when it can be)
    if parameters:
        obj["parameters"] = parameters
    return obj


def is_text(output: OutputTensor) -> bool:
    """Whether JSON can carry ``output``: not BYTES, or BYTES whose every element is UTF-8 text."""
    return output.datatype != "BYTES" or all(_utf8(bytes(item)) for item in output.data.reshape(-1))


def _utf8(item: bytes) -> bool:
    try:
        item.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def not_text_message(name: str, items: Sequence[bytes]) -> str:
    """Why BYTES output ``name`` cannot go in JSON, and how to ask for it instead."""
    index = next((i for i, item in enumerate(items) if not _utf8(item)), 0)
    return (
        f"output '{name}': BYTES element {index} is not UTF-8 text, which JSON cannot carry; request the "
        'output as binary data: "binary_data": true in its entry of the request\'s "outputs", or '
        '"binary_data_output": true in the request\'s "parameters" (the binary tensor data extension; '
        "tritonclient: InferRequestedOutput(name, binary_data=True))"
    )


def response_to_dict(
    response: InferenceResponse, outputs: Sequence[dict[str, Any]] | None = None, *, base64_bytes: bool = False
) -> dict[str, Any]:
    """A ``$inference_response`` object; ``outputs`` defaults to every output as JSON data (see :func:`output_to_dict`)."""
    obj: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        obj["model_version"] = response.model_version
    if response.id is not None:
        obj["id"] = response.id
    if response.parameters:
        obj["parameters"] = response.parameters
    if outputs is None:
        outputs = [output_to_dict(o, base64_bytes=base64_bytes) for o in response.outputs]
    obj["outputs"] = list(outputs)
    return obj


def encode_response(response: InferenceResponse, *, base64_bytes: bool = False) -> bytes:
    """The JSON body of an inference response (see :func:`output_to_dict` for ``base64_bytes``)."""
    return orjson.dumps(response_to_dict(response, base64_bytes=base64_bytes), option=orjson.OPT_SERIALIZE_NUMPY)
