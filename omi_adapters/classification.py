"""Triton's classification extension: an output returned as its top classes instead of its data.

A requested output with the parameter ``classification: k`` (REST ``"parameters":
{"classification": 2}``, gRPC ``int64_param``) comes back as a BYTES tensor of the ``k``
highest-valued elements, each the string ``"<value>:<index>"`` or, when the output declares
``labels``, ``"<value>:<index>:<label>"`` (Triton's classification extension). ``<value>`` is
printed as C++'s ``std::to_string`` prints the output's type, as Triton does: ``%f`` for floats
(``"0.700000"``), a plain integer for integers. The shape is ``[k]``, or ``[batch, k]`` for a
model that batches (each row classified on its own); ``k`` larger than the number of classes
gives them all. Equal values keep their index order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omi_adapters.errors import InvalidInputError
from omi_adapters.types import ParameterValue

__all__ = ["PARAMETER", "class_count", "classify"]

#: The requested output's parameter that asks for classification.
PARAMETER = "classification"
_NOT_NUMERIC = ("BYTES", "BOOL")


def class_count(value: ParameterValue, output: str, datatype: str) -> int:
    """The ``k`` of a requested output's ``classification`` parameter; a bad one is an :class:`InvalidInputError`."""
    if type(value) is not int or value < 1:
        raise InvalidInputError(f"output '{output}': classification must be an integer >= 1, got {value!r}")
    if datatype in _NOT_NUMERIC:
        raise InvalidInputError(f"output '{output}': classification needs a numeric output, '{output}' is {datatype}")
    return value


def classify(
    data: np.ndarray[Any, Any], k: int, *, batched: bool, labels: Sequence[str] | None = None
) -> np.ndarray[Any, Any]:
    """The top ``k`` classes of ``data`` as an object array of ``bytes`` (the BYTES tensor)."""
    shape = (data.shape[0], int(np.prod(data.shape[1:]))) if batched else (1, data.size)
    rows = data.reshape(shape)
    n = rows.shape[1]
    k = min(k, n)
    integer = data.dtype.kind in "iu"
    # Descending by value, equal values by index: a stable ascending sort of each row reversed,
    # read backwards, is exactly that (for every dtype, uint64 included).
    order = (n - 1 - np.argsort(rows[:, ::-1], axis=1, kind="stable"))[:, ::-1]
    top = order[:, :k]
    out = np.empty(top.shape, dtype=object)
    for r, row in enumerate(top):
        for c, index in enumerate(row):
            value = rows[r, index]
            text = f"{int(value)}:{index}" if integer else f"{float(value):f}:{index}"
            if labels is not None and index < len(labels):
                text = f"{text}:{labels[index]}"
            out[r, c] = text.encode()
    return out if batched else out.reshape(k)
