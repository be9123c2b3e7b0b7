"""Property-based round trips over every datatype, random shapes, JSON and binary encodings."""

from __future__ import annotations

import re
from unittest.mock import patch

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omi_adapters.codecs import binary, oip_json, tensors, typed_contents
from omi_adapters.errors import InvalidInputError
from omi_adapters.types import ARRAY_DTYPES, DATATYPES, InferenceResponse, OutputTensor

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def arrays(draw, datatype: str | None = None):
    datatype = datatype or draw(st.sampled_from(DATATYPES))
    shape = draw(shapes)
    if datatype == "BYTES":
        flat = draw(st.lists(st.binary(max_size=12), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return datatype, array.reshape(shape)
    if datatype == "BF16":
        finite = st.floats(-(2.0**126), 2.0**126, width=32)
        return datatype, tensors.bf16_to_float32(
            tensors.float32_to_bf16(draw(hnp.arrays(np.float32, shape, elements=finite)))
        )
    dtype = ARRAY_DTYPES[datatype]
    elements = None
    if dtype.kind == "f":  # JSON has no NaN or infinity
        elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def nest(flat: list, shape: tuple[int, ...]) -> list:
    """Nest a flat list as ``shape`` in pure Python (numpy would turn big uint64 into floats)."""
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def same(datatype: str, a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if datatype == "BYTES":
        return [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
    assert b.dtype == ARRAY_DTYPES[datatype]
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@settings(max_examples=300, deadline=None)
@given(arrays(), st.integers(0, 7))
def test_raw_round_trip(case, offset) -> None:
    """Raw bytes at any offset of a message decode to the same values, aligned for numpy."""
    datatype, array = case
    raw = tensors.to_raw(datatype, array)
    message = memoryview(b"\0" * offset + bytes(raw))[offset:]
    decoded = tensors.from_raw(datatype, message, array.shape, "x")
    assert same(datatype, array, decoded)
    assert decoded.flags.aligned


def test_misaligned_raw_bytes_are_copied_once_aligned() -> None:
    values = np.arange(6, dtype="<f4")
    body = bytearray(b"\0" + values.tobytes())
    assert not np.frombuffer(memoryview(body)[1:], "<f4").flags.aligned
    array = tensors.from_raw("FP32", memoryview(body)[1:], (2, 3), "x")
    body[1:5] = np.float32(42).tobytes()
    assert array.flags.aligned and array.flags.c_contiguous
    assert array.tolist() == values.reshape(2, 3).tolist()  # a copy: the message's later changes do not reach it


@settings(max_examples=300, deadline=None)
@given(arrays(), st.booleans(), st.booleans())
def test_json_request_round_trip(case, nested, base64_bytes) -> None:
    datatype, array = case
    response = InferenceResponse("m", "1", [OutputTensor("T", datatype, array.shape, array)])
    try:
        encoded = oip_json.encode_response(response, base64_bytes=base64_bytes)
    except InvalidInputError as exc:
        # Only BYTES that are not text, which JSON cannot carry without the base64 tag.
        assert datatype == "BYTES" and not base64_bytes and not oip_json.is_text(response.outputs[0])
        assert exc.message.startswith("output 'T': BYTES element ")
        return
    obj = orjson.loads(encoded)["outputs"][0]
    if nested and array.ndim > 1 and datatype != "BYTES":
        obj["data"] = nest(obj["data"], array.shape)
    request = oip_json.decode_request(orjson.dumps({"inputs": [obj]}))
    assert same(datatype, array, request.inputs[0].data)


@settings(max_examples=300, deadline=None)
@given(st.lists(arrays(), min_size=1, max_size=3), st.booleans())
def test_binary_request_and_response_round_trip(cases, all_binary) -> None:
    outputs = [OutputTensor(f"T{i}", dt, a.shape, a) for i, (dt, a) in enumerate(cases)]
    choice = {"*": all_binary, "T0": True}
    chunks, header_length = binary.encode_response(InferenceResponse("m", "1", outputs, id="7"), choice)
    body = b"".join(bytes(c) for c in chunks)
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert header["id"] == "7"
    # A response is a valid request body once outputs are renamed inputs.
    header = {"inputs": header["outputs"]}
    new_header = orjson.dumps(header)
    request = binary.decode_request(new_header + body[header_length:], len(new_header))
    for (datatype, array), decoded in zip(cases, request.inputs):
        assert same(datatype, array, decoded.data)


@settings(max_examples=200, deadline=None)
@given(arrays())
def test_typed_contents_round_trip(case) -> None:
    datatype, array = case
    if datatype not in typed_contents.CONTENTS_FIELD:
        return
    field, values = typed_contents.to_typed(datatype, array)
    assert field == typed_contents.CONTENTS_FIELD[datatype]
    assert same(datatype, array, typed_contents.from_typed(datatype, values, array.shape, "x"))


def test_fixed_size_decoding_does_not_copy() -> None:
    body = bytearray(np.arange(6, dtype="<f4").tobytes())
    array = tensors.from_raw("FP32", memoryview(body), (2, 3), "x")
    body[0:4] = np.float32(42).tobytes()
    assert array[0, 0] == 42  # a view of the request's own bytes


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint16, shapes))
def test_bf16_bits_round_trip_through_float32(bits) -> None:
    back = tensors.float32_to_bf16(tensors.bf16_to_float32(bits))
    nan = np.isnan(tensors.bf16_to_float32(bits))
    assert np.array_equal(back[~nan], bits[~nan]) and np.isnan(tensors.bf16_to_float32(back)[nan]).all()


def test_bf16_rounds_to_nearest_even() -> None:
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, np.nan], np.float32)
    bits = tensors.float32_to_bf16(values)
    assert bits.tolist()[:5] == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F80]
    assert np.isnan(tensors.bf16_to_float32(bits)[5])


def test_bytes_outputs_of_strided_arrays_are_converted_and_the_result_left_alone() -> None:
    texts = np.array([["a", "b", "c"], ["d", "e", "f"]], dtype=object)
    encoded = np.vectorize(str.encode, otypes=[object])(texts)
    mixed = np.array([[b"a", "b"], [b"c", bytearray(b"d")]], dtype=object)  # bytes first, then not
    values = (texts.T, texts[:, ::2], texts, np.array("x", dtype=object), encoded.T, encoded[:, ::2], mixed, mixed.T)
    for value in values:
        array = tensors.coerce_output("BYTES", value, "output 'T'")
        assert array.shape == value.shape
        assert all(type(item) is bytes for item in array.reshape(-1))
        expected = [
            [bytes(x, "utf-8") if isinstance(x, str) else bytes(x) for x in row] for row in np.atleast_2d(value)
        ]
        assert np.atleast_2d(array).tolist() == expected
        raw = tensors.serialize_bytes(array)
        assert tensors.deserialize_bytes(raw, array.size, "T") == array.reshape(-1).tolist()
    assert texts[0, 0] == "a" and mixed[0, 1] == "b"  # predict's own array is not written to
    assert type(mixed[1, 1]) is bytearray


def test_nan_and_infinity_are_null_in_json_and_kept_in_binary() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)
    response = InferenceResponse(model_name="m", model_version="1", outputs=[OutputTensor("Y", "FP32", (4,), values)])
    assert orjson.loads(oip_json.encode_response(response))["outputs"][0]["data"] == [None, None, None, 1.5]
    chunks, header_length = binary.encode_response(response, {"*": True})
    assert header_length is not None
    raw = b"".join(bytes(chunk) for chunk in chunks)[header_length:]
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), values)


@pytest.mark.parametrize(
    ("datatype", "values", "error"),
    [
        ("FP32", [1.0, -2.5, 3.3e38], None),
        ("FP32", [3.4028234663852886e38, -3.4028234663852886e38], None),  # FLT_MAX itself: the exact path
        ("FP32", [1.0, 3.4028235677973366e38], "value 3.4028235677973366e+38 is out of range for FP32"),
        ("FP16", [65504.0, -65504.0], None),
        ("FP16", [65519.0], None),  # rounds down to 65504
        ("FP16", [1.0, 65520.0], "value 65520.0 is out of range for FP16"),
        ("BF16", [3.3e38, 1.0], None),
        ("FP32", list(range(100)) + [1e39], "value 1e+39 is out of range for FP32"),  # past the small-array check
    ],
)
def test_float_range_checks_agree_on_both_sides_of_the_fast_path(
    datatype: str, values: list, error: str | None
) -> None:
    from omi_adapters.codecs.tensors import to_float
    from omi_adapters.errors import InvalidInputError

    array = np.array(values)
    if error is None:
        out = to_float(datatype, array, "input 'X'")
        assert np.isfinite(out).all() and out.shape == array.shape
    else:
        with pytest.raises(InvalidInputError, match=re.escape(error)):
            to_float(datatype, array, "input 'X'")


small_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-70000, 70000),
    st.integers(-(2**70), 2**70),
    st.integers(-(2**53) - 2, 2**53 + 2),
    st.booleans(),
    st.text(max_size=2),
    st.lists(st.integers(0, 3), max_size=2),
)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(["FP16", "FP32", "FP64", "BF16", "INT32"]), st.lists(small_values, max_size=8))
def test_small_flat_number_lists_decode_as_the_general_path_does(datatype: str, values: list) -> None:
    """The shortcut for small float requests gives the general path's exact bits, or its error."""

    def outcome() -> tuple:
        try:
            array = oip_json.data_from_json(datatype, values, (len(values),), "input 'x'")
        except InvalidInputError as exc:
            return ("error", exc.message)
        return ("ok", array.dtype, array.shape, array.tobytes())

    shortcut = outcome()
    with patch.object(oip_json, "small_floats", lambda datatype, values: None):
        general = outcome()
    assert shortcut == general
