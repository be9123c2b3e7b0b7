"""Tensor bytes <-> numpy arrays, shared by every wire format.

Raw tensor bytes are little-endian, row-major, without padding; a BYTES element is a 4-byte
little-endian length followed by that many bytes (interfaces.md §2.4, §2.6). Every size read
from a request is checked against the bytes actually present before anything is allocated.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

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

# Each dimension must fit in a uint64 (interfaces.md §2.3); products past int64 cannot be
# backed by any real buffer, so they are refused as well.
_MAX_ELEMENTS = 2**63 - 1
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
    """The number of elements of ``shape``, refusing counts no buffer could hold."""
    count = math.prod(shape)
    if count > _MAX_ELEMENTS:
        raise InvalidInputError(f"{where}: shape {list(shape)} has too many elements ({count})")
    return count


def from_raw(datatype: str, buffer: bytes | memoryview, shape: tuple[int, ...], where: str) -> np.ndarray[Any, Any]:
    """Decode raw tensor bytes into an array of ``datatype``'s array dtype and ``shape``.

    Fixed-size types are a zero-copy ``np.frombuffer`` view (read-only when the buffer is);
    BF16 widens to float32 and BYTES builds an object array, both necessarily copies.
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
    return memoryview(np.ascontiguousarray(array).reshape(-1)).cast("B")  # type: ignore[arg-type] # numpy 2 arrays are buffers


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
        data = _as_bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def bf16_to_float32(bits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Widen bfloat16 bit patterns (uint16) to the float32 values they stand for (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Round float32 values to bfloat16 bit patterns, to nearest with ties to even."""
    values = np.asarray(values, dtype=np.float32)
    flat = values.reshape(-1)
    bits = flat.view(np.uint32).astype(np.uint64)
    out = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    # Rounding could carry a NaN's payload into the exponent; keep NaNs quiet NaNs.
    nan = np.isnan(flat)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return out.reshape(values.shape)


def coerce_output(datatype: str, value: Any, where: str) -> np.ndarray[Any, Any]:
    """Turn a predict result into an array of ``datatype``'s array dtype, or raise ValueError.

    Numbers convert only where numpy's ``same_kind`` casting allows (float64 to FP32 yes,
    float to INT32 no); BYTES accepts str (UTF-8 encoded) and bytes-like items.
    """
    if datatype == "BYTES":
        # A new array, filled in C order: the caller's array (maybe strided, maybe kept by the
        # model) is never written to.
        source = np.asarray(value, dtype=object)
        array = np.empty(source.shape, dtype=object)
        flat = array.reshape(-1)
        for index, item in enumerate(source.flat):
            flat[index] = item if type(item) is bytes else _as_bytes(item, where)
        return array
    target = ARRAY_DTYPES[datatype]
    array = np.asarray(value)
    if array.dtype == target:
        return array
    if array.dtype == object or not np.can_cast(array.dtype, target, casting="same_kind"):
        raise ValueError(f"{where}: cannot return {array.dtype} data as {datatype}")
    if target.kind in "iu" and array.size and not np.can_cast(array.dtype, target, casting="safe"):
        # same_kind lets int64 become int8 (and int become uint) by wrapping: 1000 would be -24.
        info = np.iinfo(target)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise ValueError(f"{where}: value {int(bad)} is out of range for {datatype}")
    with np.errstate(over="ignore"):  # a result too large for a narrower float is its infinity
        return array.astype(target)


#: Magnitudes below these convert to the type without overflow (a little under the exact
#: rounding threshold of each: anything at or above takes the exact path below).
_SAFE_FLOAT = {"FP16": 65504.0, "FP32": 3.4e38, "BF16": 3.38e38}
#: Arrays up to this size are range-checked as Python floats, cheaper than numpy reductions.
_SMALL = 64


def to_float(datatype: str, array: np.ndarray[Any, Any], where: str) -> np.ndarray[Any, Any]:
    """Request numbers as FP16/FP32/FP64/BF16's array dtype, refusing a finite value that the
    type cannot hold (it would silently become infinity)."""
    safe = _SAFE_FLOAT.get(datatype)
    if safe is not None and 0 < array.size and array.dtype.kind in "iuf":
        # The common case, kept cheap for small requests: every value comfortably in range.
        if array.size <= _SMALL:
            values = array.ravel().tolist()
            low, high = min(values), max(values)
        else:
            low, high = array.min(), array.max()
        if -safe < low and high < safe:
            out = array.astype(np.float32 if datatype == "BF16" else ARRAY_DTYPES[datatype])
            return bf16_to_float32(float32_to_bf16(out)) if datatype == "BF16" else out
    with np.errstate(over="ignore"):
        out = array.astype(np.float32 if datatype == "BF16" else ARRAY_DTYPES[datatype])
        if datatype == "BF16":
            out = bf16_to_float32(float32_to_bf16(out))
    if out.size and not np.isfinite(out).all():
        overflowed = ~np.isfinite(out) & np.isfinite(array.astype(np.float64))
        if overflowed.any():
            value = array[overflowed].reshape(-1)[0]
            raise InvalidInputError(f"{where}: value {value} is out of range for {datatype}")
    return out


def _as_bytes(item: Any, where: str = "BYTES") -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytearray, memoryview, np.bytes_)):
        return bytes(item)
    raise ValueError(f"{where}: BYTES elements must be bytes or str, got {kind_of(item)}")


def kind_of(value: Any) -> str:
    """A short JSON-ish name for the type of ``value``, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, Sequence):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
