"""The size of an OMI ``Run`` message, counted from its items' files without serializing it.

protobuf's ``ByteSize()`` serializes the whole message to measure it (15 ms for a 4 MiB file
here, several times the cost of the inference itself). What the in-flight bounds and the
metrics need is the bytes a message holds, which its files dominate. (The OIP's ``ModelInfer``
and ``ModelStreamInfer`` take their requests as bytes, and count those.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["omi_run_bytes"]

#: Bytes counted for the message's own fields.
_OVERHEAD = 64


def omi_run_bytes(message: Any) -> int:
    """The bytes an OMI ``RunRequest`` or ``RunResponse`` holds: its items' files."""
    if hasattr(message, "inputs"):
        files = (item.input for item in message.inputs)
    else:
        files = (item.output for item in message.outputs)
    return _OVERHEAD + sum(len(name) + len(data) for item in files for name, data in item.items())
