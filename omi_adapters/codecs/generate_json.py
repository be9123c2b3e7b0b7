"""The JSON of Triton's generate extension: ``$generate_request`` in, ``$generate_response`` out.

Triton's generate extension maps a flat JSON object onto an inference request: a top-level key
that names one of the model's inputs becomes that input, ``id`` the request's id, the
``parameters`` object and every other top-level key (a string, number or boolean) the request's
parameters. A value becomes a tensor of the input's declared datatype: a string is one BYTES
element (UTF-8), a number or boolean one element, a list (nested for more dimensions) its
elements. When the value's own shape does not fit the declared shape (a scalar for ``[1]``, a
flat list for ``[1, -1]``), its elements are laid out in the declared shape, every variable
dimension 1 but the last, which takes the rest.

A response is one flat object too: ``model_name``, ``model_version``, ``id`` (when the request
had one) and each output by name, as one value when it holds one element and as a flat list
otherwise; BYTES elements are UTF-8 text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from omi_adapters.codecs.oip_json import data_from_json, loads
from omi_adapters.dtypes import kind_of
from omi_adapters.errors import InvalidInputError, PredictError
from omi_adapters.types import InferenceRequest, InferenceResponse, InputTensor, Parameters

__all__ = ["decode_request", "encode_response", "response_to_dict"]

_PARAMETER_TYPES = (str, int, float, bool)


def decode_request(document: bytes | memoryview, inputs: Any) -> InferenceRequest:
    """Decode a ``$generate_request`` body for a model with declared ``inputs`` (its :class:`Tensor` list)."""
    obj = loads(document)
    if not isinstance(obj, dict):
        raise InvalidInputError(f"a generate request must be a JSON object, got {kind_of(obj)}")
    declared = {t.name: t for t in inputs}
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"'id' must be a string, got {kind_of(request_id)}")
    parameters: Parameters = {}
    tensors: list[InputTensor] = []
    for key, value in obj.items():
        spec = declared.get(key)
        if spec is not None:
            tensors.append(_tensor(spec, value))
        elif key == "parameters":
            if not isinstance(value, dict):
                raise InvalidInputError(f"'parameters' must be an object, got {kind_of(value)}")
            for name, item in value.items():
                parameters[name] = _parameter(name, item)
        elif key != "id":
            parameters[key] = _parameter(key, value)
    return InferenceRequest(inputs=tensors, id=request_id, parameters=parameters)


def _parameter(key: str, value: Any) -> Any:
    if not isinstance(value, _PARAMETER_TYPES):
        raise InvalidInputError(
            f"'{key}' is not an input of this model, so it is a parameter, which must be a string, "
            f"number or boolean, got {kind_of(value)}"
        )
    return value


def _tensor(spec: Any, value: Any) -> InputTensor:
    where = f"input '{spec.name}'"
    data = value if isinstance(value, list) else [value]
    natural = _natural_shape(value)
    shape = natural if spec.matches(natural) else _fit(spec.shape, _count(data), natural)
    array = data_from_json(spec.datatype, data, natural, where)
    return InputTensor(name=spec.name, datatype=spec.datatype, shape=shape, data=array.reshape(shape))


def _natural_shape(value: Any) -> tuple[int, ...]:
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape) if shape else (1,)


def _count(data: list[Any]) -> int:
    return sum(_count(item) if isinstance(item, list) else 1 for item in data)


def _fit(declared: tuple[int, ...], count: int, natural: tuple[int, ...]) -> tuple[int, ...]:
    """The declared shape holding ``count`` elements (variable dims 1 but the last); else the natural shape."""
    fixed = 1
    for dim in declared:
        if dim != -1:
            fixed *= dim
    variable = [i for i, dim in enumerate(declared) if dim == -1]
    if not variable:
        return tuple(declared) if fixed == count else natural
    if fixed == 0 or count % fixed:
        return natural
    shape = [1 if dim == -1 else dim for dim in declared]
    shape[variable[-1]] = count // fixed
    return tuple(shape)


def response_to_dict(response: InferenceResponse) -> dict[str, Any]:
    """A ``$generate_response`` object."""
    obj: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version or ""}
    if response.id is not None:
        obj["id"] = response.id
    for output in response.outputs:
        obj[output.name] = _value(output.name, output.datatype, output.data)
    return obj


def encode_response(response: InferenceResponse) -> bytes:
    """The JSON of a ``$generate_response`` (one line: no raw line break)."""
    return orjson.dumps(response_to_dict(response), option=orjson.OPT_SERIALIZE_NUMPY)


def _value(name: str, datatype: str, data: np.ndarray[Any, Any]) -> Any:
    flat = data.reshape(-1)
    if datatype == "BYTES":
        try:
            items: list[Any] = [bytes(item).decode("utf-8") for item in flat]
        except UnicodeDecodeError:
            raise PredictError(
                f"output '{name}' is not UTF-8 text, which is all the generate extension carries; "
                "use infer for binary outputs"
            ) from None
    elif datatype in ("FP16", "BF16"):
        items = flat.astype(np.float32).tolist()
    else:
        return flat[0].item() if flat.size == 1 else np.ascontiguousarray(flat)
    return items[0] if len(items) == 1 else items
