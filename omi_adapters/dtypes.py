"""Datatype primitives below both the model contract and the wire codecs.

What a value of each OIP datatype may hold (the integer range check, used by every codec and by
the check of predict's outputs), bfloat16 conversion, floats refused where they would overflow,
and the coercion of predict's results to the declared datatype. The tables themselves are in
:mod:`omi_adapters.types`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omi_adapters.errors import InvalidInputError
from omi_adapters.types import ARRAY_DTYPES

__all__ = [
    "as_bytes",
    "bf16_to_float32",
    "check_range",
    "coerce_output",
    "float32_to_bf16",
    "kind_of",
    "out_of_range",
    "to_float",
]


def out_of_range(array: np.ndarray[Any, Any], datatype: str) -> int | None:
    """The first extreme value of an integer ``array`` that ``datatype`` cannot hold, or None."""
    if not array.size:
        return None
    info = np.iinfo(ARRAY_DTYPES[datatype])
    low, high = array.min(), array.max()
    if low < info.min:
        return int(low)
    if high > info.max:
        return int(high)
    return None


def check_range(array: np.ndarray[Any, Any], datatype: str, where: str) -> None:
    """Refuse request integers that ``datatype`` cannot hold, naming the value."""
    bad = out_of_range(array, datatype)
    if bad is not None:
        raise InvalidInputError(f"{where}: value {bad} is out of range for {datatype}")


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
        source = np.asarray(value, dtype=object)
        for item in source.flat:
            if type(item) is not bytes:
                break
        else:
            return source  # bytes already (a token a streaming model yields): nothing to convert
        # A new array for the converted items: the caller's array (maybe strided, maybe kept
        # by the model) is never written to.
        array = np.empty(source.shape, dtype=object)
        flat = array.reshape(-1)
        for index, item in enumerate(source.flat):
            flat[index] = item if type(item) is bytes else as_bytes(item, where)
        return array
    target = ARRAY_DTYPES[datatype]
    array = np.asarray(value)
    if array.dtype == target:
        return array
    if array.dtype == object or not np.can_cast(array.dtype, target, casting="same_kind"):
        raise ValueError(f"{where}: cannot return {array.dtype} data as {datatype}")
    if target.kind in "iu" and not np.can_cast(array.dtype, target, casting="safe"):
        # same_kind lets int64 become int8 (and int become uint) by wrapping: 1000 would be -24.
        bad = out_of_range(array, datatype)
        if bad is not None:
            raise ValueError(f"{where}: value {bad} is out of range for {datatype}")
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


#: The float datatypes whose small requests :func:`small_floats` converts, with the magnitude
#: below which it does: under the type's limit (:data:`_SAFE_FLOAT`), and at most 2**53, up to
#: which ints are exact doubles, so that every value converts as it would from numpy's int64
#: or float64 array.
_FAST_FLOATS: dict[str, tuple[np.dtype[Any], float]] = {
    "FP16": (np.dtype(np.float16), _SAFE_FLOAT["FP16"]),
    "FP32": (np.dtype(np.float32), float(2**53)),
    "FP64": (np.dtype(np.float64), float(2**53)),
}


def small_floats(datatype: str, values: list[Any]) -> np.ndarray[Any, Any] | None:
    """A short flat list of JSON numbers as an FP16/FP32/FP64 array, or None to take the general path.

    The common small request, converted in one step from its numbers: what :func:`to_float`
    makes of ``np.array(values)``, without the float64 array in between. Anything else (other
    types, a bool, a nested list, a value near the type's limits) is left to the general path,
    whose errors name the problem.
    """
    fast = _FAST_FLOATS.get(datatype)
    if fast is None or len(values) > _SMALL:
        return None
    dtype, limit = fast
    for value in values:
        # One pass, without min() and max(), whose argument parsing costs more than the loop.
        if (type(value) is not float and type(value) is not int) or not -limit < value < limit:
            return None
    return np.array(values, dtype=dtype)


def as_bytes(item: Any, where: str = "BYTES") -> bytes:
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
