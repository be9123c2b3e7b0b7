"""Datatype tables and the transport-neutral inference request and response.

The datatypes are the thirteen of the Open Inference Protocol (its "Tensor Data Types"). Two numpy
types are kept per datatype: the *wire* dtype, the little-endian layout of raw and binary
contents, and the *array* dtype, what a predict function receives and may return.

They differ for two datatypes only:

- ``BYTES`` has no fixed-size wire dtype; arrays hold Python ``bytes`` objects (dtype object).
- ``BF16`` travels as 2-byte raw data (bfloat16 bits). numpy has no bfloat16, so a predict
  function sees BF16 tensors as ``float32`` arrays holding the exact bfloat16 values, and
  float32 outputs declared BF16 are rounded to the nearest bfloat16 (ties to even).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ARRAY_DTYPES",
    "DATATYPES",
    "WIRE_DTYPES",
    "InferenceRequest",
    "InferenceResponse",
    "InputTensor",
    "OutputTensor",
    "Parameters",
    "RequestedOutput",
]

#: Datatype name -> little-endian wire dtype (BYTES has none: it is length-prefixed).
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
}

#: Datatype name -> the dtype of the arrays a predict function sees.
ARRAY_DTYPES: dict[str, np.dtype[Any]] = {
    **{name: dtype.newbyteorder("=") for name, dtype in WIRE_DTYPES.items()},
    "BF16": np.dtype(np.float32),
    "BYTES": np.dtype(object),
}

#: Every OIP datatype name, in the order of the OIP's "Tensor Data Types" table.
DATATYPES: tuple[str, ...] = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES", "BF16",
)  # fmt: skip

# The codecs and the DataPlane build the four dataclasses below with positional arguments (by
# keyword, a dataclass costs nearly twice as much to build): their fields keep their order.

ParameterValue = str | int | float | bool
Parameters = dict[str, ParameterValue]


@dataclass(slots=True)
class InputTensor:
    """One decoded request input: its array already has the declared array dtype and shape."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its parameters (``binary_data`` and the like)."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    """A transport-neutral OIP inference request (the OIP's ``$inference_request``)."""

    inputs: list[InputTensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None


@dataclass(slots=True)
class OutputTensor:
    """One output of a response; ``data`` has the datatype's array dtype."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferenceResponse:
    """A transport-neutral OIP inference response (the OIP's ``$inference_response``)."""

    model_name: str
    model_version: str | None
    outputs: list[OutputTensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
