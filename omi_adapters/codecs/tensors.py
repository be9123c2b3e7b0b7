"""Tensor bytes <-> numpy arrays, shared by every wire format.

Raw tensor bytes are little-endian, row-major, without padding; a BYTES element is a 4-byte
little-endian length followed by that many bytes (the OIP's raw tensor data, and Triton's binary tensor data extension). Every size read
from a request is checked against the bytes actually present before anything is allocated.
The datatype primitives that the contract shares with the codecs live in
:mod:`omi_adapters.dtypes`; the ones codecs use are re-exported here.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from omi_adapters.dtypes import as_bytes, bf16_to_float32, coerce_output, float32_to_bf16, kind_of, to_float
from omi_adapters.errors import InvalidInputError
from omi_adapters.types import ARRAY_DTYPES, WIRE_DTYPES

__all__ = [
    "MAX_DIMS",
    "bf16_to_float32",
    "check_shape",
    "coerce_output",
    "deserialize_bytes",
    "element_count",
    "float32_to_bf16",
    "from_raw",
    "kind_of",
    "serialize_bytes",
    "to_float",
    "to_raw",
]

# Each dimension must fit in a uint64 (the OIP's tensor metadata); products past int64 cannot be
# backed by any real buffer, so they are refused as well.
_MAX_ELEMENTS = 2**63 - 1
#: The widest array item there is (complex128; ours are at most 8 bytes): the bound of :func:`element_count`.
_WIDEST_ITEM = 16
#: numpy's NPY_MAXDIMS: no array has more dimensions (64 since numpy 2, 32 before).
MAX_DIMS = 64 if int(np.__version__.split(".")[0]) >= 2 else 32
_LENGTH = struct.Struct("<I")


def check_shape(shape: Any, where: str) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of non-negative ints, or raise naming the bad dimension."""
    if not isinstance(shape, (list, tuple)):
        raise InvalidInputError(f"{where}: shape must be a list of integers, got {kind_of(shape)}")
    for dim in shape:
        if type(dim) is not int:
            if isinstance(dim, float) and dim.is_integer():
                raise InvalidInputError(f"{where}: shape must hold integers, got {dim!r}")
            raise InvalidInputError(f"{where}: shape must hold integers, got {kind_of(dim)}")
        if dim < 0:
            raise InvalidInputError(f"{where}: negative dimension {dim} in shape {list(shape)}")
    if len(shape) > MAX_DIMS:
        raise InvalidInputError(f"{where}: shape has {len(shape)} dimensions; at most {MAX_DIMS} are supported")
    dims = tuple(shape)
    element_count(dims, where)
    return dims


def element_count(shape: tuple[int, ...], where: str) -> int:
    """The number of elements of ``shape``, refusing shapes no array could have.

    numpy refuses a shape whose non-zero dimensions, times the item size, multiply past int64,
    even when another dimension is 0 and the array is empty: such a shape is refused here too,
    counted for the widest item (16 bytes), before any array is made.
    """
    count = math.prod(shape)
    span = count if count else math.prod(d for d in shape if d)
    if span > _MAX_ELEMENTS // _WIDEST_ITEM:
        raise InvalidInputError(f"{where}: shape {list(shape)} has too many elements for any array ({span})")
    return count


def from_raw(datatype: str, buffer: bytes | memoryview, shape: tuple[int, ...], where: str) -> np.ndarray[Any, Any]:
    """Decode raw tensor bytes into an array of ``datatype``'s array dtype and ``shape``.

    Fixed-size types are a zero-copy ``np.frombuffer`` view (read-only when the buffer is), or
    a copy when the bytes are not aligned for the type; BF16 widens to float32 and BYTES builds
    an object array, both necessarily copies.
    """
    count = element_count(shape, where)
    if datatype == "BYTES":
        items = deserialize_bytes(buffer, count, where)
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = WIRE_DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise InvalidInputError(f"{where}: {datatype} {list(shape)} needs {expected} bytes, got {len(buffer)}")
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if datatype == "BOOL" and count and array.view(np.uint8).max() > 1:
        raise InvalidInputError(f"{where}: BOOL bytes must be 0 or 1")
    if datatype == "BF16":
        return bf16_to_float32(array)
    if not dtype.isnative:
        return array.astype(ARRAY_DTYPES[datatype])
    if not array.flags.aligned:
        # Raw contents inside a larger message (a gRPC message walked in place, an HTTP body
        # after its JSON header) start wherever the fields before them end. numpy computes on a
        # misaligned array through small buffered copies, in every operation, which cost more
        # than this one copy (4 MiB gRPC requests: from 0.73 to 0.84 of a bare handler's rate).
        return array.copy()
    return array


def to_raw(datatype: str, array: np.ndarray[Any, Any]) -> bytes | memoryview:
    """Encode an array (already of ``datatype``'s array dtype) as raw little-endian bytes.

    Contiguous native arrays are returned as a memoryview of their own memory, without a copy.
    """
    if datatype == "BYTES":
        return serialize_bytes(array)
    if datatype == "BF16":
        array = float32_to_bf16(array)
    dtype = WIRE_DTYPES[datatype]
    if array.dtype != dtype:
        array = array.astype(dtype)
    if array.size == 0:
        return b""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return memoryview(array).cast("B")  # type: ignore[arg-type] # numpy 2 arrays are buffers


def deserialize_bytes(buffer: bytes | memoryview, count: int, where: str) -> list[bytes]:
    """Split ``count`` length-prefixed BYTES elements out of ``buffer``, which they must fill."""
    view = memoryview(buffer)
    size = len(view)
    # Each element needs at least its 4-byte length: refuse impossible counts before looping.
    if count * 4 > size:
        raise InvalidInputError(f"{where}: {count} BYTES elements need at least {count * 4} bytes, got {size}")
    items: list[bytes] = []
    offset = 0
    for index in range(count):
        if offset + 4 > size:  # earlier elements took the bytes this one's length needed
            raise InvalidInputError(
                f"{where}: BYTES element {index} has no 4-byte length: the {count} elements need more than {size} bytes"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > size:
            raise InvalidInputError(
                f"{where}: BYTES element {index} declares {length} bytes, only {size - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != size:
        raise InvalidInputError(f"{where}: {size - offset} bytes left over after {count} BYTES elements")
    return items


def serialize_bytes(array: np.ndarray[Any, Any]) -> bytes:
    """Encode a BYTES array as 4-byte little-endian lengths, each followed by its bytes."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = item if type(item) is bytes else as_bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)
