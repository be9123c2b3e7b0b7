"""The size of a gRPC inference message, counted from its tensor data without serializing it.

protobuf's ``ByteSize()`` serializes the whole message to measure it: 15 ms for a 4 MiB tensor
here, several times the cost of the inference itself. What the in-flight bounds and the
metrics need is the bytes a message holds, which its tensor data dominates.
"""

from __future__ import annotations

from typing import Any

__all__ = ["infer_message_bytes", "omi_run_bytes"]

#: Bytes counted for each tensor's name, datatype and shape, and for the message's own fields.
_OVERHEAD = 64
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
    size = _OVERHEAD * (1 + len(tensors)) + sum(map(len, raw))
    if not raw:
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
