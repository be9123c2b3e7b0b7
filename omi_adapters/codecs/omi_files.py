"""OMI input and output files <-> numpy arrays (OMI's ``model.proto``, ``InputItem`` and ``OutputItem``).

An OMI ``Run`` item is a map of file names to bytes; the file names are the model's declared
input names. A file is decoded by what it is, among the media types its input accepts:

- ``application/x-npy``: a ``.npy`` file (recognised by its magic bytes; never pickled);
- ``application/json``: a nested list (a bare number or string for a scalar), or an OIP tensor
  object ``{"datatype", "shape", "data"}`` (``parameters.content_type: base64`` for BYTES);
- any other type (``text/plain``, ``image/png``, ``application/octet-stream``, ...): the bytes
  themselves, for an input that holds exactly one ``BYTES`` element per item.

When an input accepts both JSON and raw bytes, only a valid JSON array or tensor object is taken
as JSON, so a text such as ``42``, ``hello``, ``[sic] ...`` or ``{"a": 1}`` stays text.

When the model batches (``max_batch_size > 0``) an item is one sample: its tensors have the
declared shape without the batch dimension (a leading dimension of 1 is also accepted).
Outputs are one file per output tensor, named after it, encoded by the output's first media
type: JSON (the default, a nested list), ``.npy``, or raw bytes for anything else.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from omi_adapters.codecs.oip_json import data_from_json
from omi_adapters.codecs.tensors import check_shape, kind_of, to_float, to_raw
from omi_adapters.contract import Tensor
from omi_adapters.dtypes import check_range
from omi_adapters.errors import ConfigurationError, InvalidInputError, PayloadTooLargeError
from omi_adapters.metadata import parse_size
from omi_adapters.types import ARRAY_DTYPES

__all__ = ["ERROR_FILE", "JSON", "NPY", "OCTET_STREAM", "FileCodec", "InputFile", "OutputFile"]

#: The ``max_size`` OMI ``Status`` reports for a tensor that declares none: chassis' default (its
#: ``add_input``/``add_output``). Only a declared ``max_size`` is enforced.
DEFAULT_MAX_SIZE = "1M"

JSON = "application/json"
NPY = "application/x-npy"
OCTET_STREAM = "application/octet-stream"
#: The file a failed item carries its reason in (the proto comment on ``OutputItem.success``).
ERROR_FILE = "error"

_NPY_MAGIC = b"\x93NUMPY"


def _item_shape(spec: Tensor, batched: bool) -> tuple[int, ...]:
    return tuple(spec.shape[1:] if batched else spec.shape)


def _one_element(shape: tuple[int, ...]) -> bool:
    return all(d in (1, -1) for d in shape)


def _matches(declared: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return len(declared) == len(shape) and all(d == -1 or d == s for d, s in zip(declared, shape))


class InputFile:
    """How one declared input is read from an OMI file: accepted types, size limit, shape."""

    def __init__(self, spec: Tensor, batched: bool) -> None:
        self.spec = spec
        self.batched = batched
        self.shape = _item_shape(spec, batched)
        self.media_types: tuple[str, ...] = tuple(spec.media_types) or self._default_types()
        self.accepts_json = JSON in self.media_types
        self.accepts_npy = NPY in self.media_types
        self.accepts_raw = (
            spec.datatype == "BYTES"
            and _one_element(self.shape)
            and any(t not in (JSON, NPY) for t in self.media_types)
        )
        if not (self.accepts_json or self.accepts_npy or self.accepts_raw):
            raise ConfigurationError(
                f"input '{spec.name}' ({spec.describe()}) accepts {', '.join(self.media_types)}, none of which OMI "
                f"can decode: raw bytes fit only a one-element BYTES input; use {JSON} or {NPY}"
            )
        self.max_size = spec.max_size or DEFAULT_MAX_SIZE
        self.limit = parse_size(spec.max_size, f"input '{spec.name}' max_size") if spec.max_size else None

    def _default_types(self) -> tuple[str, ...]:
        if self.spec.datatype == "BYTES" and _one_element(self.shape):
            return (JSON, NPY, OCTET_STREAM)
        return (JSON, NPY)

    def describe(self) -> str:
        """``FP32 [4]``: the datatype and the shape of one item."""
        return f"{self.spec.datatype} {list(self.shape)}"

    def decode(self, data: bytes) -> np.ndarray[Any, Any]:
        """Decode one file into an array of the declared datatype and the item shape."""
        name = self.spec.name
        if self.limit is not None and len(data) > self.limit:
            raise PayloadTooLargeError(
                f"input file '{name}' is {len(data)} bytes, larger than its max_size {self.max_size}"
            )
        if data.startswith(_NPY_MAGIC) and self.accepts_npy:
            return self._fit(self._from_npy(data))
        if self.accepts_json and (not self.accepts_raw or data.lstrip()[:1] in (b"[", b"{")):
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                if not self.accepts_raw:
                    accepted = ", ".join(self.media_types)
                    raise InvalidInputError(
                        f"input file '{name}' is not valid JSON ({exc}); the input accepts {accepted}"
                    ) from None
            else:
                # For an input that also takes raw bytes, JSON that is not a tensor is just text.
                if not (self.accepts_raw and isinstance(doc, dict) and "data" not in doc):
                    return self._fit(self._from_json(doc))
        if self.accepts_raw:
            return self._fit(self._from_raw(data))
        raise InvalidInputError(
            f"input file '{name}' is not in a media type it accepts ({', '.join(self.media_types)})"
        )

    def _fit(self, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        shape = tuple(array.shape)
        if self.batched and len(shape) == len(self.shape) + 1 and shape[0] == 1:
            array, shape = array.reshape(shape[1:]), shape[1:]
        if not _matches(self.shape, shape):
            per_item = " per item (the model batches items)" if self.batched else ""
            raise InvalidInputError(
                f"input file '{self.spec.name}': expected {self.describe()}{per_item}, "
                f"got {self.spec.datatype} {list(shape)}"
            )
        return array

    def _from_raw(self, data: bytes) -> np.ndarray[Any, Any]:
        array = np.empty(tuple(1 if d == -1 else d for d in self.shape), dtype=object)
        array.reshape(-1)[0] = bytes(data)
        return array

    def _from_json(self, doc: Any) -> np.ndarray[Any, Any]:
        where = f"input file '{self.spec.name}'"
        if isinstance(doc, dict):
            return self._from_tensor_object(doc, where)
        if isinstance(doc, list):
            return data_from_json(self.spec.datatype, doc, check_shape(_nesting(doc), where), where)
        if doc is None:
            raise InvalidInputError(f"{where}: expected a nested list or a tensor object, got {kind_of(doc)}")
        return data_from_json(self.spec.datatype, [doc], (), where)

    def _from_tensor_object(self, doc: dict[str, Any], where: str) -> np.ndarray[Any, Any]:
        datatype = doc.get("datatype", self.spec.datatype)
        if datatype != self.spec.datatype:
            raise InvalidInputError(
                f"{where}: the tensor's datatype {datatype!r} is not the declared {self.spec.datatype}"
            )
        if "data" not in doc:
            raise InvalidInputError(f"{where}: a tensor object needs 'data' (and 'shape')")
        parameters = doc.get("parameters") or {}
        b64 = isinstance(parameters, dict) and parameters.get("content_type") == "base64"
        shape = check_shape(doc["shape"] if "shape" in doc else _nesting(doc["data"]), where)
        return data_from_json(datatype, doc["data"], shape, where, b64)

    def _from_npy(self, data: bytes) -> np.ndarray[Any, Any]:
        where = f"input file '{self.spec.name}'"
        try:
            _check_npy_size(data)
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InvalidInputError(f"{where} is not a readable .npy file: {exc}") from None
        return _cast(self.spec.datatype, array, where)


def _check_npy_size(data: bytes) -> None:
    """Refuse a ``.npy`` whose header claims more data than the file holds.

    ``np.load`` from memory allocates the claimed array before reading it: a few bytes of
    header could otherwise ask for terabytes (a MemoryError) or gigabytes of address space.
    """
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    # Versions 2.0 and 3.0 share the header layout; 3.0 only allows UTF-8 in field names.
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream)
    if dtype.hasobject:
        return  # np.load refuses it without unpickling
    claimed = math.prod(shape) * dtype.itemsize
    held = len(data) - stream.tell()
    if claimed > held:
        raise ValueError(
            f"its header claims {dtype} {list(shape)} ({claimed} bytes), but it holds {held} bytes of data"
        )


def _nesting(doc: Any) -> tuple[int, ...]:
    """The shape a nested list claims, read along its first elements (raggedness is checked later)."""
    shape = []
    while isinstance(doc, list):
        shape.append(len(doc))
        if not doc:
            break
        doc = doc[0]
    return tuple(shape)


def _cast(datatype: str, array: np.ndarray[Any, Any], where: str) -> np.ndarray[Any, Any]:
    """Convert a loaded ``.npy`` array to ``datatype``'s array dtype, where it converts exactly."""
    kind = array.dtype.kind
    if datatype == "BYTES":
        if kind == "S":
            return np.array([bytes(v) for v in array.reshape(-1)], dtype=object).reshape(array.shape)
        if kind == "U":
            return np.array([str(v).encode("utf-8", "surrogatepass") for v in array.reshape(-1)], dtype=object).reshape(
                array.shape
            )
        raise InvalidInputError(f"{where}: a .npy of {array.dtype} cannot be BYTES (use a bytes or str array)")
    target = ARRAY_DTYPES[datatype]
    if datatype == "BOOL" and kind != "b" or kind not in "biuf" or not np.can_cast(array.dtype, target, "same_kind"):
        raise InvalidInputError(f"{where}: a .npy of {array.dtype} cannot be {datatype}")
    if target.kind in "iu" and kind in "iu":
        check_range(array, datatype, where)
    if target.kind == "f":
        return array if array.dtype == target and datatype != "BF16" else to_float(datatype, array, where)
    return array.astype(target, copy=False)


class OutputFile:
    """How one declared output is written to an OMI file: its media type and size limit."""

    def __init__(self, spec: Tensor, batched: bool) -> None:
        if spec.name == ERROR_FILE:
            raise ConfigurationError(f"output '{ERROR_FILE}' would collide with OMI's error file; rename it")
        self.spec = spec
        self.shape = _item_shape(spec, batched)
        self.media_type = spec.media_types[0] if spec.media_types else JSON
        if self.media_type == NPY and spec.datatype == "BYTES":
            raise ConfigurationError(
                f"output '{spec.name}': a .npy file cannot hold BYTES without pickling; use {JSON} or a raw media type"
            )
        self.max_size = spec.max_size or DEFAULT_MAX_SIZE
        self.limit = parse_size(spec.max_size, f"output '{spec.name}' max_size") if spec.max_size else None

    def encode(self, array: np.ndarray[Any, Any]) -> bytes:
        """One item's output array as file bytes; a result past ``max_size`` is refused."""
        if self.media_type == JSON:
            data = _to_json(self.spec.datatype, array)
        elif self.media_type == NPY:
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
            data = buffer.getvalue()
        elif self.spec.datatype == "BYTES" and array.size == 1:
            data = bytes(array.reshape(-1)[0])
        else:
            # Any other media type of a numeric or many-element output: the raw tensor bytes
            # (little-endian, row-major; BYTES length-prefixed), as Triton's binary tensor data extension lays them out.
            data = bytes(to_raw(self.spec.datatype, array))
        if self.limit is not None and len(data) > self.limit:
            raise PayloadTooLargeError(
                f"output '{self.spec.name}' is {len(data)} bytes, larger than its max_size {self.max_size}"
            )
        return data


def _to_json(datatype: str, array: np.ndarray[Any, Any]) -> bytes:
    if datatype != "BYTES":
        # orjson writes numpy arrays natively, float32 in its shortest form; it takes no 0-d
        # arrays, so a scalar goes out as a one-element list without its brackets.
        if array.ndim == 0:
            return orjson.dumps(array.reshape(1), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
        return orjson.dumps(np.ascontiguousarray(array), option=orjson.OPT_SERIALIZE_NUMPY)
    flat = [bytes(v) for v in array.reshape(-1)]
    try:
        texts = [v.decode("utf-8") for v in flat]
    except UnicodeDecodeError:
        # Not text: an OIP tensor object with base64 elements, the form the inputs accept too.
        return orjson.dumps(
            {"datatype": "BYTES", "shape": list(array.shape), "data": [base64.b64encode(v).decode("ascii") for v in flat],
             "parameters": {"content_type": "base64"}}
        )  # fmt: skip
    return orjson.dumps(np.array(texts, dtype=object).reshape(array.shape).tolist())


class FileCodec:
    """The OMI file codec of one model: every input and output, checked once at start-up."""

    def __init__(self, inputs: Sequence[Tensor], outputs: Sequence[Tensor], *, batched: bool) -> None:
        self.batched = batched
        self.inputs = {spec.name: InputFile(spec, batched) for spec in inputs}
        self.outputs = [OutputFile(spec, batched) for spec in outputs]

    def decode_item(self, files: Mapping[str, bytes]) -> dict[str, np.ndarray[Any, Any]]:
        """Decode one Run item: every file must name a declared input, and no required one may be missing."""
        unknown = sorted(set(files).difference(self.inputs))
        if unknown:
            raise InvalidInputError(
                f"unknown input file(s) {', '.join(repr(n) for n in unknown)}; "
                f"the input files are: {', '.join(self.inputs) or 'none'}"
            )
        missing = [n for n, f in self.inputs.items() if n not in files and not f.spec.optional]
        if missing:
            raise InvalidInputError(
                f"missing input file(s) {', '.join(repr(n) for n in missing)} "
                f"({'; '.join(self.inputs[n].describe() for n in missing)})"
            )
        return {name: self.inputs[name].decode(data) for name, data in files.items()}

    def encode_item(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, bytes]:
        """One item's output files, one per declared output present in ``arrays``."""
        return {f.spec.name: f.encode(arrays[f.spec.name]) for f in self.outputs if f.spec.name in arrays}
