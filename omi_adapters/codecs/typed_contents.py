"""OIP gRPC ``InferTensorContents`` (typed contents) <-> numpy (the OIP's gRPC ``grpc_predict_v2.proto``).

Pure functions over plain sequences: the gRPC front end hands in a message's repeated field
and gets back the field name and values to set. FP16 and BF16 have no typed field; they
travel only as raw contents (the OIP's gRPC protocol has no contents field for them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omi_adapters.codecs.tensors import element_count
from omi_adapters.dtypes import check_range
from omi_adapters.errors import InvalidInputError
from omi_adapters.types import ARRAY_DTYPES

__all__ = ["CONTENTS_FIELD", "from_typed", "to_typed"]

#: Datatype -> the ``InferTensorContents`` field that carries it.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

#: The element type of each contents field on the wire (the OIP's gRPC ``grpc_predict_v2.proto``).
_FIELD_DTYPES: dict[str, np.dtype[Any]] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}


def from_typed(datatype: str, values: Sequence[Any], shape: tuple[int, ...], where: str) -> np.ndarray[Any, Any]:
    """Decode the values of ``datatype``'s contents field into an array of ``shape``."""
    if datatype not in CONTENTS_FIELD:
        raise InvalidInputError(f"{where}: {datatype} cannot travel as typed contents; send raw_input_contents")
    count = element_count(shape, where)
    if len(values) != count:
        raise InvalidInputError(
            f"{where}: {CONTENTS_FIELD[datatype]} has {len(values)} elements, shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    target = ARRAY_DTYPES[datatype]
    # Read the values as their wire field's type: letting numpy guess turns UINT64 values
    # above 2**63 into float64 and loses them.
    field = CONTENTS_FIELD[datatype]
    try:
        wide = np.array(values, dtype=_FIELD_DTYPES[field])
    except (OverflowError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"{where}: {field} holds a value that is not {_FIELD_DTYPES[field]}: {exc}") from None
    if wide.size and target.kind in "iu" and wide.dtype.itemsize > target.itemsize:
        # int_contents/uint_contents are 32-bit on the wire; narrower types need a range check.
        check_range(wide, datatype, where)
    return wide.astype(target, copy=False).reshape(shape)


def to_typed(datatype: str, array: np.ndarray[Any, Any]) -> tuple[str, list[Any]]:
    """The contents field and the flat values that encode ``array`` as ``datatype``."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInputError(f"{datatype} cannot travel as typed contents; ask for raw contents")
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return field, [bytes(item) for item in flat]
    return field, flat.tolist()
