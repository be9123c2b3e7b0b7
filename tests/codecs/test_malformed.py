"""Every malformed request gets the invalid-input error with a message naming the problem."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from omi_adapters.codecs import binary, oip_json, tensors, typed_contents
from omi_adapters.errors import InvalidInputError


def req(*inputs, **extra) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def x(**fields):
    return {"name": "X", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0], **fields}


def _nested(depth: int) -> list:
    data: list = [1.0]
    for _ in range(depth - 1):
        data = [data]
    return data


def bin_input(size, **fields):
    return {"name": "X", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": size}, **fields}


JSON_CASES = [
    (b"{not json", "request body is not valid JSON"),
    (b"\xff\xfe{}", "request body is not valid JSON"),
    (b"[1, 2]", "an inference request must be a JSON object, got a list"),
    (b"{}", "missing 'inputs'"),
    (req(id=5), "'id' must be a string, got the number 5"),
    (orjson.dumps({"inputs": {}}), "'inputs' must be a list, got an object"),
    (req(7), r"inputs\[0\] must be an object, got the number 7"),
    (req(x(name=3)), r"inputs\[0\]: 'name' must be a non-empty string"),
    (req(x(datatype="FP33")), "input 'X': unknown datatype 'FP33'"),
    (req(x(datatype=None)), "input 'X': 'datatype' must be a string, got null"),
    (req({"name": "X", "datatype": "FP32", "data": []}), "input 'X': missing 'shape'"),
    (req(x(shape=[-1])), r"input 'X': negative dimension -1 in shape \[-1\]"),
    (req(x(shape=[2.0])), "input 'X': shape must hold integers, got 2.0"),
    (req(x(shape="2")), "input 'X': shape must be a list of integers, got the string '2'"),
    (req(x(shape=[100000000, 100000000])), "input 'X': 'data' has 2 elements, shape .* needs 10{16}"),
    (req(x(shape=[2**40, 2**40])), "has too many elements"),
    # Empty, yet numpy refuses it: its other dimensions multiply past int64 bytes.
    (req(x(shape=[0, 2**31, 2**31], data=[])), r"shape \[0, 2147483648, 2147483648\] has too many elements for any"),
    (req({"name": "X", "datatype": "FP32", "shape": [2]}), "input 'X': missing 'data'"),
    (req(x(data=5)), "input 'X': 'data' must be a list, got the number 5"),
    (req(x(data=[1.0, 2.0, 3.0])), r"'data' has 3 elements, shape \[2\] needs 2"),
    (req(x(data=[[1.0], [2.0, 3.0]])), "'data' is ragged"),
    (req(x(shape=[1] * 70, data=[1.0])), "input 'X': shape has 70 dimensions; at most 64 are supported"),
    (req(x(shape=[1], data=_nested(70))), "input 'X': 'data' is nested deeper than 64 levels"),
    (req(x(shape=[2, 2], data=[[1.0, 2.0, 3.0, 4.0]])), r"nested as \[1, 4\], which does not match shape \[2, 2\]"),
    (req(x(data=["a", "b"])), "FP32 data must be numbers, got strings"),
    (req(x(data=[1.0, None])), "FP32 data must be numbers"),
    (req(x(datatype="INT32", data=[1.5, 2])), "INT32 data must be integers, got floating-point numbers"),
    (req(x(datatype="UINT8", data=[1, 300])), "value 300 is out of range for UINT8"),
    (req(x(datatype="INT8", data=[-129, 0])), "value -129 is out of range for INT8"),
    (req(x(datatype="UINT64", data=[-1, 0])), "value -1 is out of range for UINT64"),
    (req(x(datatype="INT32", data=[1, None])), "INT32 data must be integers, got mixed"),
    (
        b'{"inputs":[{"name":"X","datatype":"UINT64","shape":[2],"data":[18446744073709551616,0]}]}',
        "UINT64 data must be integers, got floating-point",
    ),
    (req(x(datatype="BOOL", data=[1, 0])), "BOOL data must be true/false, got integers"),
    (req(x(datatype="BYTES", data=["a", 1])), "BYTES elements must be strings, element 1 is the number 1"),
    (req(x(datatype="BYTES", shape=[2, 1], data=[["a"], ["b", "c"]])), "nested 'data' does not match shape"),
    (
        req(x(datatype="BYTES", data=["@@", "YQ=="], parameters={"content_type": "base64"})),
        "element 0 is not valid base64",
    ),
    (req(x(parameters=[1])), "input 'X': 'parameters' must be an object, got a list"),
    (req(x(parameters={"a": {"b": 1}})), "parameter 'a' must be a string, number or boolean, got an object"),
    (req(bin_input(8)), "binary_data_size is set but the request has no binary data"),
    (req(x(), outputs={}), "'outputs' must be a list, got an object"),
    (req(x(), outputs=[{"name": ""}]), r"outputs\[0\]: 'name' must be a non-empty string"),
]


@pytest.mark.parametrize("body, message", JSON_CASES)
def test_malformed_json(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        oip_json.decode_request(body)


def binary_body(header: dict, payload: bytes) -> tuple[bytes, int]:
    h = orjson.dumps(header)
    return h + payload, len(h)


BINARY_CASES = [
    (binary_body({"inputs": [bin_input(8)]}, b"\0" * 7), "binary_data_size 8 exceeds the 7 binary bytes that remain"),
    (binary_body({"inputs": [bin_input(8)]}, b"\0" * 9), "1 bytes of binary data are not claimed"),
    (binary_body({"inputs": [bin_input(4)]}, b"\0" * 4), r"FP32 \[2\] needs 8 bytes, got 4"),
    (binary_body({"inputs": [bin_input(-1)]}, b""), "binary_data_size must be a non-negative integer"),
    (binary_body({"inputs": [bin_input(8, data=[1, 2])]}, b"\0" * 8), "has both 'data' and binary_data_size"),
    (binary_body({"inputs": [bin_input(2, datatype="BOOL")]}, b"\x01\x02"), "BOOL bytes must be 0 or 1"),
    (
        binary_body({"inputs": [bin_input(4, datatype="BYTES", shape=[1])]}, struct.pack("<I", 9)),
        "BYTES element 0 declares 9 bytes, only 0 remain",
    ),
    (
        binary_body({"inputs": [bin_input(4, datatype="BYTES", shape=[2])]}, struct.pack("<I", 0)),
        "2 BYTES elements need at least 8 bytes, got 4",
    ),
    (
        binary_body({"inputs": [bin_input(6, datatype="BYTES", shape=[1])]}, struct.pack("<I", 1) + b"ab"),
        "1 bytes left over after 1 BYTES elements",
    ),
    (
        binary_body({"inputs": [bin_input(8, shape=[100000000, 100000000])]}, b"\0" * 8),
        "needs 40000000000000000 bytes, got 8",
    ),
    ((b"[" + b"\0" * 8, 1), "the JSON header .* is not valid JSON"),
]


@pytest.mark.parametrize("case, message", BINARY_CASES)
def test_malformed_binary(case, message: str) -> None:
    body, length = case
    with pytest.raises(InvalidInputError, match=message):
        binary.decode_request(body, length)


@pytest.mark.parametrize("value, message", [
    ("abc", "must be a non-negative integer, got 'abc'"),
    ("-3", "must be a non-negative integer, got '-3'"),
    ("１２", "must be a non-negative integer"),
    ("999", "Inference-Header-Content-Length 999 exceeds the body's 10 bytes"),
])  # fmt: skip
def test_bad_header_length(value: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        binary.parse_header_length(value, 10)


def test_huge_bytes_count_is_refused_before_allocating() -> None:
    with pytest.raises(InvalidInputError, match="need at least"):
        tensors.from_raw("BYTES", b"\0" * 16, (10**12,), "x")


def test_bytes_elements_that_leave_no_room_for_the_next_length_are_refused() -> None:
    # Two elements of 4 bytes fill the 16 bytes: the third has no length left to read.
    raw = (b"\x04\0\0\0" + b"\0" * 4) * 2
    with pytest.raises(InvalidInputError, match="BYTES element 2 has no 4-byte length"):
        tensors.from_raw("BYTES", raw, (4,), "x")


@pytest.mark.parametrize("datatype, values, shape, message", [
    ("FP16", [1.0], (1,), "FP16 cannot travel as typed contents"),
    ("FP32", [1.0, 2.0], (3,), r"fp32_contents has 2 elements, shape \[3\] needs 3"),
    ("INT8", [1000], (1,), "value 1000 is out of range for INT8"),
])  # fmt: skip
def test_malformed_typed_contents(datatype, values, shape, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        typed_contents.from_typed(datatype, values, shape, "input 'X'")


def test_raw_binary_request_for_one_input_model() -> None:
    body = np.arange(8, dtype="<f4").tobytes()
    request = binary.decode_raw_request(body, "X", "FP32", (-1, 4))
    assert request.inputs[0].shape == (2, 4)
    assert request.parameters["binary_data_output"] is True
    with pytest.raises(InvalidInputError, match="do not fill whole FP32 rows"):
        binary.decode_raw_request(body[:-4], "X", "FP32", (-1, 4))
    with pytest.raises(InvalidInputError, match="at most one variable dimension"):
        binary.decode_raw_request(body, "X", "FP32", (-1, -1))
    text = binary.decode_raw_request(b"hello", "T", "BYTES", (-1,))
    assert text.inputs[0].data.tolist() == [b"hello"]


def test_json_carries_id_and_parameters() -> None:
    request = oip_json.decode_request(
        req(
            x(),
            id="abc",
            parameters={"binary_data_output": True},
            outputs=[{"name": "Y", "parameters": {"binary_data": False}}],
        )
    )
    assert request.id == "abc" and request.parameters == {"binary_data_output": True}
    assert binary.wants_binary(request) == {"*": True, "Y": False}


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("FP32", 3.4028235677973366e38), ("FP16", 65520.0), ("BF16", 3.4e38), ("FP32", -1e39), ("FP16", 10**6)],
)
def test_numbers_too_large_for_the_float_type_are_refused(datatype: str, value: float) -> None:
    body = req({"name": "X", "datatype": datatype, "shape": [2], "data": [1.0, value]})
    with pytest.raises(InvalidInputError, match=f"input 'X': value .* is out of range for {datatype}"):
        oip_json.decode_request(body)


def test_the_largest_finite_values_are_kept() -> None:
    for datatype, value in (("FP32", 3.4028234663852886e38), ("FP16", 65504.0), ("FP64", 1.7976931348623157e308)):
        array = oip_json.decode_request(req({"name": "X", "datatype": datatype, "shape": [1], "data": [value]}))
        assert float(array.inputs[0].data[0]) == value
