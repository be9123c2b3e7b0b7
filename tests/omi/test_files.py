"""The OMI file codec: JSON, .npy and raw files in; JSON, .npy and raw files out (no gRPC here)."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from omi_adapters import ConfigurationError, InvalidInputError, PayloadTooLargeError, Tensor
from omi_adapters.codecs.omi_files import JSON, NPY, OCTET_STREAM, FileCodec, InputFile, OutputFile
from omi_adapters.types import ARRAY_DTYPES, DATATYPES


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


MATRIX = Tensor("X", "FP32", [-1, 3])
TEXT = Tensor("TEXT", "BYTES", [-1])


@pytest.mark.parametrize(
    "data",
    [
        b"[[1, 2, 3], [4, 5, 6]]",
        b' {"datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}',
        b'{"data": [[1, 2, 3], [4, 5, 6]]}',
        npy(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64)),
        npy(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)),
    ],
    ids=["nested-list", "tensor-object", "tensor-object-without-shape", "npy-float64", "npy-int16"],
)
def test_numeric_inputs_decode_from_json_and_npy(data: bytes) -> None:
    array = InputFile(MATRIX, batched=False).decode(data)
    assert array.dtype == np.float32 and array.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_a_batched_item_is_one_sample_and_may_carry_a_batch_of_one() -> None:
    file = InputFile(MATRIX, batched=True)
    assert file.decode(b"[1, 2, 3]").shape == (3,)
    assert file.decode(b"[[1, 2, 3]]").shape == (3,)
    with pytest.raises(
        InvalidInputError, match=r"expected FP32 \[3\] per item \(the model batches items\), got FP32 \[2, 3\]"
    ):
        file.decode(b"[[1, 2, 3], [4, 5, 6]]")


def test_scalars_and_declared_shapes() -> None:
    scalar = InputFile(Tensor("N", "INT64", [-1]), batched=True)
    assert scalar.decode(b"7").tolist() == 7
    with pytest.raises(InvalidInputError, match=r"input file 'X': expected FP32 \[-1, 3\], got FP32 \[2, 2\]"):
        InputFile(MATRIX, batched=False).decode(b"[[1, 2], [3, 4]]")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"[[1, 2, 3], [4, 5]]", "ragged"),
        (b"[[1.5, 2, 3]]", None),
        (b"nonsense", "is not valid JSON"),
        (
            b'{"datatype": "INT32", "shape": [1, 3], "data": [1, 2, 3]}',
            "the tensor's datatype 'INT32' is not the declared FP32",
        ),
        (b'{"shape": [1, 3]}', "a tensor object needs 'data'"),
        (b'[["a", "b", "c"]]', "FP32 data must be numbers"),
        (b"null", "expected a nested list or a tensor object, got null"),
        (npy(np.array([["a", "b", "c"]])), "a .npy of <U1 cannot be FP32"),
        (b"\x93NUMPY garbage", "is not a readable .npy file"),
    ],
)
def test_bad_numeric_files_name_the_problem(data: bytes, message: str | None) -> None:
    file = InputFile(MATRIX, batched=False)
    if message is None:
        assert file.decode(data).tolist() == [[1.5, 2, 3]]
        return
    with pytest.raises(InvalidInputError, match=message):
        file.decode(data)


def test_integer_npy_files_are_range_checked_and_never_unpickled() -> None:
    file = InputFile(Tensor("X", "INT8", [-1]), batched=False)
    assert file.decode(npy(np.array([1, -2], dtype=np.int64))).dtype == np.int8
    with pytest.raises(InvalidInputError, match="value 300 is out of range for INT8"):
        file.decode(npy(np.array([1, 300])))
    with pytest.raises(InvalidInputError, match="a .npy of float64 cannot be INT8"):
        file.decode(npy(np.array([1.5])))
    with pytest.raises(InvalidInputError, match="not a readable .npy file"):
        InputFile(TEXT, batched=False).decode(npy(np.array([b"x", None], dtype=object)))


@pytest.mark.parametrize("shape", [(10**12,), (3,)], ids=["terabytes", "three"])
def test_a_npy_header_claiming_more_than_the_file_holds_is_refused(shape: tuple[int, ...]) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with pytest.raises(
        InvalidInputError, match=rf"claims float64 \[{shape[0]}\] \({shape[0] * 8} bytes\), but it holds 16"
    ):
        InputFile(MATRIX, batched=False).decode(header.getvalue() + bytes(16))


def test_one_element_bytes_inputs_take_raw_files_and_json() -> None:
    file = InputFile(TEXT, batched=True)
    assert file.media_types == (JSON, NPY, OCTET_STREAM)
    for raw in (b"hello world", b"42", b'"quoted"', b"[sic] text", b'{"a": 1}', b"\x89PNG\r\n\x1a\n\x00\xff"):
        array = file.decode(raw)
        assert array.shape == () and array.dtype == object and array[()] == raw
    assert file.decode(b'["from json"]')[()] == b"from json"
    assert (
        file.decode(b'{"datatype": "BYTES", "data": ["aGk="], "parameters": {"content_type": "base64"}}')[()] == b"hi"
    )
    assert file.decode(npy(np.array(["npy text"])))[()] == b"npy text"
    unbatched = InputFile(TEXT, batched=False).decode(b"raw")
    assert unbatched.shape == (1,) and unbatched[0] == b"raw"


def test_declared_media_types_decide_what_is_accepted() -> None:
    text_only = InputFile(Tensor("T", "BYTES", [1], media_types=["text/plain"]), batched=False)
    assert text_only.decode(b"[1, 2]")[0] == b"[1, 2]"
    json_only = InputFile(Tensor("X", "FP32", [-1], media_types=[JSON]), batched=False)
    with pytest.raises(InvalidInputError, match=r"is not valid JSON .*; the input accepts application/json"):
        json_only.decode(npy(np.array([1.0])))
    many = InputFile(Tensor("T", "BYTES", [-1, 2]), batched=True)
    assert many.media_types == (JSON, NPY)
    with pytest.raises(ConfigurationError, match="raw bytes fit only a one-element BYTES input"):
        InputFile(Tensor("X", "FP32", [-1], media_types=["image/png"]), batched=False)


def test_oversize_input_files_are_refused_with_the_limit() -> None:
    file = InputFile(Tensor("T", "BYTES", [-1], max_size="8"), batched=True)
    assert file.decode(b"12345678")[()] == b"12345678"
    with pytest.raises(PayloadTooLargeError, match="input file 'T' is 9 bytes, larger than its max_size 8"):
        file.decode(b"123456789")
    with pytest.raises(ConfigurationError, match="max_size"):
        InputFile(Tensor("T", "BYTES", [-1], max_size="lots"), batched=True)


def test_items_must_name_exactly_the_declared_inputs() -> None:
    codec = FileCodec([MATRIX, Tensor("W", "FP32", [-1], optional=True)], [Tensor("Y", "FP32", [-1])], batched=False)
    assert set(codec.decode_item({"X": b"[[1, 2, 3]]"})) == {"X"}
    with pytest.raises(InvalidInputError, match=r"unknown input file\(s\) 'x', 'y.json'; the input files are: X, W"):
        codec.decode_item({"x": b"[]", "y.json": b"[]", "X": b"[[1,2,3]]"})
    with pytest.raises(InvalidInputError, match=r"missing input file\(s\) 'X' \(FP32 \[-1, 3\]\)"):
        codec.decode_item({"W": b"[1]"})


def test_outputs_are_json_by_default_npy_or_raw_when_declared() -> None:
    matrix = np.array([[1.5, 2], [3, 4]], dtype=np.float32)
    assert orjson.loads(OutputFile(Tensor("Y", "FP32", [-1, 2]), batched=False).encode(matrix)) == [[1.5, 2], [3, 4]]
    scalar = OutputFile(Tensor("P", "FP32", [-1]), batched=True).encode(np.array(0.9815571904182434, dtype=np.float32))
    assert scalar == b"0.9815572"
    strided = np.array([[1, 2, 3]], dtype=np.uint64)[:, ::-1]
    assert OutputFile(Tensor("U", "UINT64", [-1, 3]), batched=False).encode(strided) == b"[[3,2,1]]"
    loaded = np.load(
        io.BytesIO(OutputFile(Tensor("Y", "FP32", [-1, 2], media_types=[NPY]), batched=False).encode(matrix))
    )
    assert loaded.dtype == np.float32 and (loaded == matrix).all()
    raw = OutputFile(Tensor("Y", "FP32", [-1, 2], media_types=[OCTET_STREAM]), batched=False).encode(matrix)
    assert raw == matrix.astype("<f4").tobytes()
    text = np.array(b"HELLO", dtype=object)
    assert OutputFile(Tensor("U", "BYTES", [-1], media_types=["text/plain"]), batched=True).encode(text) == b"HELLO"
    words = np.array([b"a", "\u00e9".encode()], dtype=object)
    assert orjson.loads(OutputFile(TEXT, batched=False).encode(words)) == ["a", "\u00e9"]
    binary = orjson.loads(OutputFile(TEXT, batched=False).encode(np.array([b"\xff"], dtype=object)))
    assert binary == {"datatype": "BYTES", "shape": [1], "data": ["/w=="], "parameters": {"content_type": "base64"}}


def test_output_declarations_that_cannot_work_are_refused_and_limits_hold() -> None:
    with pytest.raises(ConfigurationError, match="collide with OMI's error file"):
        OutputFile(Tensor("error", "FP32", [-1]), batched=False)
    with pytest.raises(ConfigurationError, match="cannot hold BYTES without pickling"):
        OutputFile(Tensor("T", "BYTES", [-1], media_types=[NPY]), batched=False)
    small = OutputFile(Tensor("Y", "FP32", [-1], max_size="10"), batched=False)
    with pytest.raises(PayloadTooLargeError, match="output 'Y' is 21 bytes, larger than its max_size 10"):
        small.encode(np.array([1, 2, 3, 4, 5], dtype=np.float32))


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
def test_every_numeric_datatype_round_trips_through_json_and_npy(datatype: str) -> None:
    values = np.array([[1, 0], [0, 1]]).astype(ARRAY_DTYPES[datatype])
    for media in (JSON, NPY):
        out = OutputFile(Tensor("Y", datatype, [-1, 2], media_types=[media]), batched=True)
        back = InputFile(Tensor("Y", datatype, [-1, 2], media_types=[media]), batched=True)
        for row in values:
            decoded = back.decode(out.encode(row))
            assert decoded.dtype == ARRAY_DTYPES[datatype] and (decoded == row).all()
        assert out.encode(values[0, 0, ...]) in (b"1", b"1.0", b"true") or media == NPY


def test_json_nested_past_numpys_dimensions_fails_with_a_clear_error() -> None:
    deep = b"[" * 70 + b'"a"' + b"]" * 70
    with pytest.raises(InvalidInputError, match="input file 'TEXT': shape has 70 dimensions; at most 64"):
        InputFile(Tensor("TEXT", "BYTES", [-1] * 70), batched=False).decode(deep)


def test_npy_floats_keep_infinity_but_refuse_overflow() -> None:
    file = InputFile(Tensor("X", "FP32", [-1]), batched=False)
    kept = file.decode(npy(np.array([np.inf, -np.inf, 1.0])))
    assert kept.dtype == np.float32 and kept.tolist() == [np.inf, -np.inf, 1.0]
    with pytest.raises(InvalidInputError, match="input file 'X': value 1e\\+39 is out of range for FP32"):
        file.decode(npy(np.array([1.0, 1e39])))
    rounded = InputFile(Tensor("X", "BF16", [-1]), batched=False).decode(npy(np.array([1.00390625], dtype=np.float32)))
    assert rounded.tolist() == [1.0]  # float32 data declared BF16 is still rounded to bfloat16


def test_a_unicode_npy_with_a_lone_surrogate_is_kept_as_its_bytes() -> None:
    decoded = InputFile(TEXT, batched=False).decode(npy(np.array(["a\ud800"])))
    assert decoded.tolist() == ["a\ud800".encode("utf-8", "surrogatepass")]
