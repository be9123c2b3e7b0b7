"""Large numeric ``data`` arrays of OIP JSON bodies, decoded in bounded chunks.

``orjson.loads`` parses a whole document in one C call that holds the GIL, and a list of Python
numbers costs about 32 bytes per element: a body of hundreds of MiB would block every other
request for seconds and take many times its size in memory. :func:`loads_large` cuts the large
numeric arrays out of such a body before orjson sees it, and decodes each one in chunks of
:data:`CHUNK_BYTES` straight into the array of its input's datatype: peak memory is that array
plus a few chunks, and no single call holds the GIL for more than a few milliseconds.

The rest of the document (its *skeleton*, each cut array replaced by a placeholder string) is
parsed by orjson as before, and the numbers of each chunk are parsed by orjson too, so every
number means exactly what it means to the exact path (``orjson.loads`` then ``np.array``). What
this module adds is the bracket structure of the arrays, checked against the declared shape.

With pysimdjson installed (``omi-adapters[fastjson]``), a chunk of floats for a float datatype
is parsed by simdjson straight into a float64 buffer instead, about twice as fast, with no
Python float per element: both parsers round every number to the nearest double, so the values
are the same. A chunk simdjson refuses (a syntax error, a number out of range, an integer past
64 bits) is parsed by orjson as without it, so errors are named as they were.

Whatever is unusual (an array that turns out to be inside a string or outside a ``data`` value,
a syntax error, a ragged or mis-nested array, a datatype other than the fixed-size numeric
ones, integers too large for the fast conversions) makes :func:`loads_large` return ``None``,
and the caller decodes the original body on the exact path: results and error messages never
depend on which path ran. Errors that the chunked decoder can name exactly as the exact path
does (element count of flat data, floats in integer data, integer range, float overflow) are
kept in :class:`LargeData` and raised when the request reaches that input.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import orjson

from omi_adapters.codecs.tensors import MAX_DIMS, bf16_to_float32, check_shape, float32_to_bf16
from omi_adapters.errors import InvalidInputError
from omi_adapters.types import ARRAY_DTYPES

__all__ = ["CHUNK_BYTES", "MIN_ARRAY_BYTES", "MIN_BODY_BYTES", "LargeData", "loads_large"]

#: Bodies shorter than this are parsed by orjson in one piece (the hot path of small requests).
MIN_BODY_BYTES = 64 * 1024
#: Numeric arrays at least this long are cut out of the body and decoded in chunks.
MIN_ARRAY_BYTES = 16 * 1024
#: The text of one chunk of a cut array: parsing it (orjson, then numpy) takes one or two calls
#: of about a millisecond each, between which other threads get the GIL.
CHUNK_BYTES = 128 * 1024
#: The body is searched for numeric arrays this many bytes at a time.
SCAN_BYTES = 1024 * 1024

_FLOATS = frozenset({"FP16", "FP32", "FP64", "BF16"})
_INTEGERS = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
_WS = b" \t\n\r"
# The bytes a JSON array of numbers can hold; in _NOT_NUMERIC they map to 0, every other byte to 1.
_NUMERIC = b"0123456789+-.eE,[]" + _WS
_NOT_NUMERIC = bytes(0 if byte in _NUMERIC else 1 for byte in range(256))
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")
_OPEN, _CLOSE, _COMMA, _BACKSLASH = ord("["), ord("]"), ord(","), ord("\\")
# Past 2**53 an integer converted to float64 first and to a narrower float second may round
# differently from one converted directly; the exact path does one or the other depending on
# the whole array, so such integers in float data go to the exact path.
_EXACT_IN_FLOAT64 = 2**53
_INT64 = np.iinfo(np.int64)

try:  # optional (omi-adapters[fastjson]): parses a chunk of numbers into doubles without Python floats
    import simdjson
except ImportError:  # pragma: no cover - exercised by the tests with it switched off
    simdjson = None  # type: ignore[assignment]


class _FloatParser:
    """simdjson's parser for the chunks of one body, made at its first chunk of floats.

    A parser keeps buffers sized to the largest chunk it parsed (about 0.7 MB for a chunk):
    one per body, dropped with it, rather than one kept by every thread that ever decoded one.
    """

    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser: Any = None

    def floats(self, text: bytes) -> np.ndarray[Any, Any] | None:
        """The numbers of the JSON array ``text`` as float64; ``None`` when simdjson is not
        installed or refuses them (orjson then parses the chunk and names the error)."""
        if simdjson is None:
            return None
        if self._parser is None:
            self._parser = simdjson.Parser()
        try:
            array: Any = self._parser.parse(text)  # a simdjson.Array for a document that is one
            return np.frombuffer(array.as_buffer(of_type="d"), np.float64)
        except Exception:  # noqa: BLE001 - whatever simdjson refuses (ValueError, RuntimeError, ...), orjson judges
            return None


# How far the leading brackets and the trailing separators of an array are looked for.
_PROBE = 4096


class LargeData:
    """A ``data`` array decoded by :func:`loads_large`: its array, or the exact path's error."""

    __slots__ = ("_array", "_error")

    def __init__(self, array: np.ndarray[Any, Any] | None, error: str | None) -> None:
        self._array = array
        self._error = error

    def result(self, where: str) -> np.ndarray[Any, Any]:
        """The decoded array, or raise the error the exact path raises for this data."""
        if self._array is None:
            raise InvalidInputError(f"{where}: {self._error}")
        return self._array


def loads_large(document: bytes | bytearray | memoryview) -> Any:
    """Parse a request body, its large numeric ``data`` arrays decoded in chunks.

    Returns the parsed object with :class:`LargeData` in place of each such array, or ``None``
    when the body has no such array or anything about it is unusual: the caller then parses
    ``document`` on the exact path.
    """
    if not isinstance(document, (bytes, bytearray)) or len(document) < MIN_BODY_BYTES:
        return None
    regions = _regions(document)
    if not regions:
        return None
    # A placeholder is a string only this call can produce. Its opening quote is never escaped
    # (_candidate refuses arrays right after a backslash), so one that lands inside a string
    # closes that string and the '@' after it is a syntax error: a skeleton that parses has
    # every cut array where a value was, and the document has the same structure.
    prefix = f"@omi-data:{os.urandom(8).hex()}:"
    with memoryview(document) as view:
        pieces: list[bytes | memoryview] = []
        last = 0
        for index, (start, end) in enumerate(regions):
            pieces += [view[last:start], f'"{prefix}{index}"'.encode()]
            last = end
        pieces.append(view[last:])
        skeleton = b"".join(pieces)
        del pieces
    try:
        obj = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return None
    inputs = obj.get("inputs") if isinstance(obj, dict) else None
    if not isinstance(inputs, list):
        return None
    owners: list[dict[str, Any] | None] = [None] * len(regions)
    for item in inputs:
        data = item.get("data") if isinstance(item, dict) else None
        if isinstance(data, str) and data.startswith(prefix):
            owners[int(data[len(prefix) :])] = item
    if any(owner is None for owner in owners):
        return None  # an array that is not a 'data' value (or a value a duplicate key replaced)
    parser = _FloatParser()
    for (start, end), owner in zip(regions, owners):
        assert owner is not None
        decoded = _decode(document, start, end, owner.get("datatype"), owner.get("shape"), parser)
        if decoded is None:
            return None
        owner["data"] = decoded
    return obj


def _regions(doc: bytes | bytearray) -> list[tuple[int, int]]:
    """The (start, end) of each array of at least MIN_ARRAY_BYTES made only of numeric bytes."""
    regions: list[tuple[int, int]] = []
    last = -1  # the last byte seen that no array of numbers can hold
    for base in range(0, len(doc), SCAN_BYTES):
        window = doc[base : base + SCAN_BYTES]
        if not window.translate(None, _NUMERIC):
            continue  # all numeric (the quick test: deleting is faster than mapping)
        marks = np.flatnonzero(np.frombuffer(window.translate(_NOT_NUMERIC), np.bool_))
        marks += base
        gaps = np.diff(marks, prepend=last)
        for index in np.flatnonzero(gaps > MIN_ARRAY_BYTES).tolist():
            _candidate(doc, regions, int(marks[index] - gaps[index]) + 1, int(marks[index]))
        last = int(marks[-1])
    if len(doc) - last - 1 >= MIN_ARRAY_BYTES:
        _candidate(doc, regions, last + 1, len(doc))
    return regions


def _candidate(doc: bytes | bytearray, regions: list[tuple[int, int]], start: int, end: int) -> None:
    """Keep the array that a run of numeric bytes holds, from its '[' to its last ']'."""
    head = doc[start : min(end, start + _PROBE)]
    begin = start + len(head) - len(head.lstrip(_WS))
    if begin >= start + len(head) or doc[begin] != _OPEN or (begin == start > 0 and doc[start - 1] == _BACKSLASH):
        return
    tail = doc[max(begin, end - _PROBE) : end]
    finish = end - (len(tail) - len(tail.rstrip(_WS + b",")))
    if finish - begin >= MIN_ARRAY_BYTES and doc[finish - 1] == _CLOSE:
        regions.append((begin, finish))


def _decode(
    doc: bytes | bytearray, start: int, end: int, datatype: Any, shape_value: Any, parser: _FloatParser
) -> LargeData | None:
    """Decode the array ``doc[start:end]`` for its input, or ``None`` to leave it to the exact path."""
    if datatype not in _FLOATS and datatype not in _INTEGERS:
        return None  # BOOL, BYTES or not a datatype: the exact path decides
    try:
        shape = check_shape(shape_value, "")
    except InvalidInputError:
        return None
    count = math.prod(shape)
    head = doc[start : start + _PROBE].translate(None, _WS)
    depth = len(head) - len(head.lstrip(b"["))
    if depth == len(head) or depth > MAX_DIMS:
        return None
    nested = depth > 1
    bound = (end - start) // 2 + 1  # no array of this length holds more numbers
    if nested and (depth != len(shape) or not 0 < count <= bound):
        return None  # the exact path names the mismatch or the raggedness
    strides = [math.prod(shape[depth - j :]) for j in range(1, depth)]
    chunks = _Chunks(datatype, shape, count, count <= bound)
    pos, stop = (start, end) if nested else (start + 1, end - 1)
    with memoryview(doc) as view:
        while True:
            cut = stop if stop - pos <= CHUNK_BYTES else doc.rfind(b",", pos, pos + CHUNK_BYTES)
            if cut < pos:
                return None  # a number or a blank longer than a chunk
            if nested:
                raw = bytes(doc[pos:cut])
                text = b"[" + raw.translate(_BRACKETS_TO_SPACES) + b"]"
            elif doc.find(b"[", pos, cut) >= 0 or doc.find(b"]", pos, cut) >= 0:
                return None  # flat data with a list inside: ragged
            else:
                text = b"".join((b"[", view[pos:cut], b"]"))
            floats = any(doc.find(char, pos, cut) >= 0 for char in (b".", b"e", b"E"))
            values: list[Any] | np.ndarray[Any, Any] | None = None
            if floats and chunks.is_float:
                values = parser.floats(text)
            if values is None:
                try:
                    values = orjson.loads(text)
                except orjson.JSONDecodeError:
                    return None
            del text
            if len(values) == 0:
                return None  # ',,' or a trailing comma
            if nested and not _nested_as_shape(raw, chunks.seen, len(values), cut == stop, depth, strides):
                return None
            if not chunks.add(values, floats):
                return None
            del values
            if cut == stop:
                # Nested data with another count is nested otherwise than the shape: the exact
                # path says how.
                return None if nested and chunks.seen != count else chunks.finish()
            pos = cut + 1


def _nested_as_shape(raw: bytes, first: int, n: int, last: bool, depth: int, strides: list[int]) -> bool:
    """Whether the brackets of a chunk of ``n`` numbers (the first at flat index ``first``) are
    those of an array nested exactly as the shape whose inner strides are ``strides``.

    Between numbers k-1 and k such an array has as many ']' then '[' as there are strides that
    divide k; it opens ``depth`` brackets before its first number and closes as many after its last.
    """
    text = np.frombuffer(raw.translate(None, _WS), np.uint8)
    opens = np.flatnonzero(text == _OPEN)
    closes = np.flatnonzero(text == _CLOSE)
    # '[' only at the start, or after '[' or ','; ']' only at the end, or before ']' or ','.
    before = text[opens[opens > 0] - 1]
    after = text[closes[closes < text.size - 1] + 1]
    if not (((before == _OPEN) | (before == _COMMA)).all() and ((after == _CLOSE) | (after == _COMMA)).all()):
        return False
    commas = np.flatnonzero(text == _COMMA)
    if commas.size != n - 1:
        return False
    edges = np.concatenate(([0], commas, [text.size]))
    opened = np.diff(np.searchsorted(opens, edges))
    closed = np.diff(np.searchsorted(closes, edges))
    index = np.arange(first, first + n + 1, dtype=np.int64)
    between = np.zeros(n + 1, dtype=np.int64)
    for stride in strides:
        between += index % stride == 0
    want_opened, want_closed = between[:-1], between[1:]
    if first == 0:
        want_opened[0] = depth
    if last:
        want_closed[-1] = depth
    return bool(np.array_equal(opened, want_opened) and np.array_equal(closed, want_closed))


def _exact_integers(values: list[Any]) -> np.ndarray[Any, Any] | None:
    """``values`` as an int64 array, or a uint64 one when some are past int64, if they are all
    integers one of them holds; ``None`` otherwise, or when they might not all be integers.

    orjson makes floats of integers past 64 bits; fromiter would take one rounded to -2**63 for
    that integer, so an array whose minimum is -2**63 is left to the caller's closer look.
    """
    try:
        array = np.fromiter(values, dtype=np.int64, count=len(values))
        if array.min() > _INT64.min:
            return array
    except OverflowError:
        pass
    try:
        return np.fromiter(values, dtype=np.uint64, count=len(values))
    except OverflowError:
        return None


class _Chunks:
    """The numbers of one array, chunk after chunk, and what the exact path would say of them."""

    def __init__(self, datatype: str, shape: tuple[int, ...], count: int, allocate: bool) -> None:
        self.datatype = datatype
        self.shape = shape
        self.count = count
        self.is_float = datatype in _FLOATS
        self.target = ARRAY_DTYPES[datatype]
        # None once the result can only be an error (too many numbers, out of range, floats in
        # integer data): later chunks are still parsed, to find any syntax error first.
        self.out: np.ndarray[Any, Any] | None = np.empty(count, self.target) if allocate else None
        self.seen = 0
        self.any_float = False  # a number written as a float, or an integer orjson made one
        self.big_int = False  # an integer past 2**53 in float data
        self.low: int | None = None  # integer data: the smallest and largest value so far
        self.high: int | None = None
        self.overflow: Any = None  # float data: the first value too large for the datatype

    def add(self, values: list[Any] | np.ndarray[Any, Any], floats: bool) -> bool:
        """Take the next chunk's numbers (orjson's list, or simdjson's doubles for float data);
        ``floats`` says its text has a '.', 'e' or 'E'. False when only the exact path can
        decode the array."""
        n = len(values)
        start = self.seen
        self.seen += n
        if self.out is not None and self.seen > self.count:
            self.out = None
        if self.is_float:
            return self._add_floats(values, floats, start)
        assert isinstance(values, list)
        if floats:
            self.any_float = True
        if self.any_float:
            self.out = None
            return True
        array = _exact_integers(values)
        if array is not None:
            low, high = int(array.min()), int(array.max())
        else:
            if any(type(value) is float for value in values):
                self.any_float = True  # orjson makes floats of integers past 64 bits
                self.out = None
                return True
            low, high = min(values), max(values)
            if _INT64.min <= low and high <= _INT64.max:
                array = np.array(values, dtype=np.int64)
            elif low >= 0:
                array = np.array(values, dtype=np.uint64)
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        if self.out is not None:
            info = np.iinfo(self.target)
            if array is None or low < info.min or high > info.max:
                self.out = None
            else:
                np.copyto(self.out[start : self.seen], array, casting="unsafe")
        return True

    def _add_floats(self, values: list[Any] | np.ndarray[Any, Any], floats: bool, start: int) -> bool:
        if floats:
            if isinstance(values, np.ndarray):
                array = values
            else:
                array = np.fromiter(values, dtype=np.float64, count=len(values))
            self.any_float = True
        else:
            assert isinstance(values, list)
            integers = _exact_integers(values)
            if integers is None or integers.dtype != np.int64:
                return False  # integers past int64 (or floats orjson made of them)
            array = integers
            if int(array.min()) < -_EXACT_IN_FLOAT64 or int(array.max()) > _EXACT_IN_FLOAT64:
                self.big_int = True
        if self.out is None:
            return True
        # As tensors.to_float does it, so that each value comes out the same.
        with np.errstate(over="ignore"):
            out = array.astype(np.float32 if self.datatype == "BF16" else self.target)
            if self.datatype == "BF16":
                out = bf16_to_float32(float32_to_bf16(out))
        finite = np.isfinite(out)
        if not finite.all():
            self.overflow = array[np.flatnonzero(~finite)[0]]
            self.out = None
            return True
        self.out[start : self.seen] = out
        return True

    def finish(self) -> LargeData | None:
        """The array, or the exact path's error for it; ``None`` to leave it to the exact path."""
        datatype, shape, count = self.datatype, self.shape, self.count
        if self.seen != count:
            return LargeData(None, f"'data' has {self.seen} elements, shape {list(shape)} needs {count}")
        if self.is_float:
            if self.big_int and self.any_float:
                return None
            if self.overflow is not None:
                value = np.float64(self.overflow) if self.any_float else int(self.overflow)
                return LargeData(None, f"value {value} is out of range for {datatype}")
        else:
            if self.any_float:
                return LargeData(None, f"{datatype} data must be integers, got floating-point numbers")
            assert self.low is not None and self.high is not None
            info = np.iinfo(self.target)
            if self.low < info.min or self.high > info.max:
                bad = self.low if self.low < info.min else self.high
                return LargeData(None, f"value {bad} is out of range for {datatype}")
        assert self.out is not None
        return LargeData(self.out.reshape(shape), None)
