"""The size of a gRPC inference message, counted from its tensor data without serializing it.

protobuf's ``ByteSize()`` serializes the whole message to measure it (15 ms for a 4 MiB tensor
here, several times the cost of the inference itself), and even reading a raw contents entry
copies it. What the in-flight bounds and the metrics need is the bytes a message holds, which
its tensor data dominates: raw contents are counted from each tensor's datatype and shape
(decoding checks that the bytes are exactly that), BYTES tensors and typed contents from the
values themselves.
"""

from __future__ import annotations

import math
from typing import Any

from omi_adapters.types import WIRE_DTYPES

__all__ = ["infer_message_bytes", "omi_run_bytes"]

#: Bytes counted for each tensor's name, datatype and shape, and for the message's own fields.
_OVERHEAD = 64
#: Up to this, a raw tensor's size is taken from its shape; past it the bytes are measured, so
#: that a shape larger than its data is refused by decoding (400), not by the in-flight bound.
_TRUSTED_SHAPE_BYTES = 16 * 1024 * 1024
#: Bytes counted per typed value (the widest of them, int64/uint64/fp64).
_TYPED_VALUE = 8
_TYPED_FIELDS = (
    "bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
    "fp32_contents", "fp64_contents",
)  # fmt: skip


def infer_message_bytes(message: Any) -> int:
    """The bytes a ``ModelInferRequest`` or ``ModelInferResponse`` holds (raw or typed contents)."""
    raw = message.raw_input_contents if hasattr(message, "raw_input_contents") else message.raw_output_contents
    tensors = message.inputs if hasattr(message, "inputs") else message.outputs
    size = _OVERHEAD * (1 + len(tensors))
    if raw:
        for index, tensor in enumerate(tensors):
            dtype = WIRE_DTYPES.get(tensor.datatype)
            declared = math.prod(tensor.shape) * dtype.itemsize if dtype is not None else None
            if declared is not None and declared <= _TRUSTED_SHAPE_BYTES:
                size += declared
            elif index < len(raw):  # BYTES, a very large shape (maybe false), or a bad datatype: measured
                size += len(raw[index])
    else:
        for tensor in tensors:
            if tensor.HasField("contents"):
                contents = tensor.contents
                size += _TYPED_VALUE * sum(len(getattr(contents, f)) for f in _TYPED_FIELDS)
                size += sum(4 + len(b) for b in contents.bytes_contents)
    return size


def omi_run_bytes(message: Any) -> int:
    """The bytes an OMI ``RunRequest`` or ``RunResponse`` holds: its items' files."""
    if hasattr(message, "inputs"):
        files = (item.input for item in message.inputs)
    else:
        files = (item.output for item in message.outputs)
    return _OVERHEAD + sum(len(name) + len(data) for item in files for name, data in item.items())
