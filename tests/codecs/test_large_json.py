"""Large JSON bodies: their numeric arrays are decoded in chunks (json_numbers), with results and
errors identical to the exact path (orjson.loads of the whole body, then np.array), peak memory
a small multiple of the body, and the GIL given back between chunks."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from omi_adapters.codecs import json_numbers, oip_json
from omi_adapters.errors import InvalidInputError
from omi_adapters.types import DATATYPES

NUMERIC = [d for d in DATATYPES if d not in ("BOOL", "BYTES")]
INT_RANGES = {d: (int(np.iinfo(d.lower()).min), int(np.iinfo(d.lower()).max)) for d in NUMERIC if "INT" in d}


@pytest.fixture(autouse=True, scope="module", params=["simdjson", "orjson"])
def chunk_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs with simdjson parsing chunks of floats (omi-adapters[fastjson]) and without it."""
    saved = json_numbers.simdjson
    if request.param == "orjson":
        json_numbers.simdjson = None
    else:
        assert saved is not None, "pysimdjson is installed by the test requirements (omi-adapters[all])"
    try:
        yield request.param
    finally:
        json_numbers.simdjson = saved


@contextlib.contextmanager
def thresholds(min_body: int = 0, min_array: int = 12, chunk: int = 64) -> Iterator[None]:
    """Small thresholds, so that small bodies take the chunked path and cross chunk boundaries."""
    saved = json_numbers.MIN_BODY_BYTES, json_numbers.MIN_ARRAY_BYTES, json_numbers.CHUNK_BYTES
    json_numbers.MIN_BODY_BYTES, json_numbers.MIN_ARRAY_BYTES, json_numbers.CHUNK_BYTES = min_body, min_array, chunk
    try:
        yield
    finally:
        json_numbers.MIN_BODY_BYTES, json_numbers.MIN_ARRAY_BYTES, json_numbers.CHUNK_BYTES = saved


def outcome(decode: Any, body: bytes) -> tuple[Any, ...]:
    """What a decoder makes of a body: every input's dtype, shape and bytes, or the error."""
    try:
        request = decode(body)
    except Exception as exc:  # noqa: BLE001 - the two paths must fail alike, whatever the exception
        return ("error", type(exc).__name__, str(exc))
    tensors = [(t.name, t.datatype, t.data.dtype.str, t.data.shape, t.data.tobytes()) for t in request.inputs]
    return ("ok", tensors, request.id, request.parameters)


def exact(body: bytes) -> Any:
    return oip_json.request_from_dict(oip_json.loads(body))


def assert_same(body: bytes, *, fast: bool | None = None) -> tuple[Any, ...]:
    """The default decoder agrees with the exact path; ``fast`` says whether the chunked path must
    (or must not) have taken the body."""
    got, want = outcome(oip_json.decode_request, body), outcome(exact, body)
    assert got == want
    used = json_numbers.loads_large(body) is not None
    if currently_in_test_context():
        event(f"chunked path: {used}, {want[0]}")
    if fast is not None:
        assert used is fast, want
    return want


def request(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def with_data(tensor: dict[str, Any], text: str) -> bytes:
    """A one-input body whose 'data' is ``text`` verbatim."""
    head = orjson.dumps({"inputs": [{**tensor, "data": "@@DATA@@"}]})
    return head.replace(b'"@@DATA@@"', text.encode())


def nest(tokens: list[str], shape: list[int], sep: str = ",") -> str:
    if len(shape) <= 1:
        return "[" + sep.join(tokens) + "]"
    step = len(tokens) // shape[0]
    return "[" + sep.join(nest(tokens[i * step : (i + 1) * step], shape[1:], sep) for i in range(shape[0])) + "]"


# --- generated bodies -------------------------------------------------------------------------

EDGE_NUMBERS = [
    "0", "-0", "0.0", "-0.0", "1", "-1", "1e-45", "-1e-45", "1.4e-45", "1e-320", "2.5e-324", "1e-400",
    "3.4028234663852886e38", "3.4028235e38", "3.4028235677973366e38", "3.5e38", "-3.5e38", "1e39",
    "65504", "65504.0", "65519.99", "65520", "1e5", "1E5", "1e+5", "1E-5", "6.103515625e-05",
    "1.7976931348623157e308", "-1.7976931348623157e308", "9007199254740992", "9007199254740993",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "100000000000000000000000", "1e400",
    "0.30000000000000004", "0.1", "123456789012345678901234567890e-20", "255", "256", "-128", "-129",
    "32767", "32768", "65535", "65536", "2147483647", "2147483648", "4294967295", "4294967296",
]  # fmt: skip
BAD_NUMBERS = [
    "+1", ".5", "1.", "01", "-01", "00", "-", "1e", "1e+", "nan", "NaN", "inf", "-Infinity", "0x10",
    "1.2.3", "--1", "1e5.5", "1ee5", "1E5E5", '"1"', "true", "null", "[]", "{}", "1 2", "- 1",
]  # fmt: skip


@st.composite
def json_number(draw: st.DrawFn) -> str:
    """A JSON number as text, in the forms clients write."""
    sign = draw(st.sampled_from(["", "-"]))
    integer = draw(st.sampled_from(["0", "1", "9"]) | st.integers(1, 10**25).map(str))
    fraction = draw(st.none() | st.text("0123456789", min_size=1, max_size=20).map(lambda f: "." + f))
    exponent = draw(st.none() | st.tuples(st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), st.integers(0, 330)))
    return sign + integer + (fraction or "") + ("".join(map(str, exponent)) if exponent else "")


numbers = st.one_of(
    st.integers(-300, 300).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: repr(float(np.float32(f)))),
    st.sampled_from(EDGE_NUMBERS),
    json_number(),
)
blanks = st.sampled_from(["", " ", "\n", "\t", "\r\n", " \n  "])
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """One- or two-input bodies with number arrays as text: nested or flat, odd blanks, and
    sometimes a mistake (bad numbers, raggedness, wrong counts, stray commas or brackets, the
    array inside a string or under another key)."""
    datatype = draw(st.sampled_from(NUMERIC * 4 + ["BOOL", "BYTES", "FP33"]))
    shape = draw(shapes)
    count = int(np.prod(shape))
    tokens = draw(st.lists(numbers, min_size=count, max_size=count))
    if draw(st.integers(0, 9)) == 0:
        tokens[draw(st.integers(0, count - 1))] = draw(st.sampled_from(BAD_NUMBERS))
    layout = draw(st.sampled_from(["flat"] * 3 + ["nested"] * 3 + ["other", "ragged", "more", "fewer"]))
    if layout == "more":
        tokens.append(draw(numbers))
    elif layout == "fewer" and count > 1:
        tokens.pop()
    sep = draw(blanks) + "," + draw(blanks)
    if layout == "nested":
        text = nest(tokens, shape, sep)
    elif layout == "other":
        text = nest(tokens, list(reversed(shape)) if len(shape) > 1 else [1, count], sep)
    elif layout == "ragged" and len(shape) > 1 and shape[-1] > 1:
        text = nest(tokens, shape, sep)
        text = text.replace(sep + tokens[1] + "]", "]", 1)
    else:
        text = nest(tokens, [len(tokens)], sep)
    text = draw(blanks) + text + draw(blanks)
    mistake = draw(st.integers(0, 30))
    if mistake == 0:
        text = text[: text.rindex("]")] + "," + text[text.rindex("]") :]
    elif mistake == 1:
        text = text.replace(",", ",,", 1)
    elif mistake == 2:
        text = text.replace(",", " ", 1)
    elif mistake == 3 and len(text) > 2:
        at = draw(st.integers(1, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(["[", "]", "[]", "x", '"'])) + text[at:]
    tensor = {"name": "X", "datatype": datatype, "shape": shape}
    place = draw(st.sampled_from(["data"] * 10 + ["second"] * 2 + ["string", "id", "parameter", "shape"]))
    if place == "string":
        body = with_data(tensor, '"' + text + '"')
    elif place == "id":
        body = with_data(tensor, text).replace(b'{"inputs"', b'{"id":"' + text.encode() + b'","inputs"', 1)
    elif place == "parameter":
        body = with_data({**tensor, "parameters": {"p": "@@P@@"}}, text).replace(b'"@@P@@"', text.encode())
    elif place == "shape":
        body = with_data({**tensor, "shape": "@@S@@"}, text).replace(b'"@@S@@"', text.encode())
    else:
        body = with_data(tensor, text)
    if place == "second":
        other = {"name": "Y", "datatype": "FP64", "shape": [3], "data": "@@D@@"}
        body = body[:-2] + b"," + orjson.dumps(other).replace(b'"@@D@@"', text.encode()) + b"]}"
    return body


@settings(max_examples=2000, deadline=None)
@given(bodies(), st.sampled_from([16, 40, 100, 1 << 20]))
@example(with_data({"name": "X", "datatype": "FP32", "shape": [3]}, "[1.5, 2, -0]"), 16)
def test_chunked_decoding_matches_the_exact_path(body: bytes, chunk: int) -> None:
    with thresholds(chunk=chunk):
        assert_same(body)


@st.composite
def valid_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """Well-formed requests, with numbers the datatype holds, that the chunked path must take."""
    datatype = draw(st.sampled_from(NUMERIC))
    shape = draw(shapes)
    count = int(np.prod(shape))
    if datatype in INT_RANGES:
        low, high = INT_RANGES[datatype]
        values = st.integers(low, high).map(str) | st.sampled_from([str(low), str(high), "0", "-0"])
        values = values.filter(lambda v: low <= int(v) <= high)
    else:
        values = st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, width=16 if datatype == "FP16" else 32).map(repr),
            st.integers(-(2**53), 2**53).map(str),
            st.sampled_from(["-0", "-0.0", "1e-45", "65504", "6e-8", "1E3"]),
        )
        if datatype == "FP64":
            values |= st.floats(allow_nan=False, allow_infinity=False).map(repr)
    tokens = draw(st.lists(values, min_size=count, max_size=count))
    sep = draw(blanks) + "," + draw(blanks)
    text = nest(tokens, shape if draw(st.booleans()) else [count], sep)
    return text, with_data({"name": "X", "datatype": datatype, "shape": shape}, text)


@settings(max_examples=800, deadline=None)
@given(valid_bodies(), st.sampled_from([16, 40, 100, 1 << 20]))
def test_valid_numeric_data_takes_the_chunked_path(case: tuple[str, bytes], chunk: int) -> None:
    text, body = case
    with thresholds(chunk=chunk):
        # Arrays shorter than MIN_ARRAY_BYTES stay in the skeleton; so much text between two
        # commas that a chunk (which ends at a comma) cannot hold it is left to the exact path.
        long_gap = any(len(between) >= chunk - 1 for between in text.split(","))
        fast = None if long_gap or len(text) < json_numbers.MIN_ARRAY_BYTES else True
        want = assert_same(body, fast=fast)
    assert want[0] == "ok" or "out of range" in want[2], want


# --- table cases at the real thresholds --------------------------------------------------------


def big(datatype: str, tokens: list[str], *, nested: list[int] | None = None, sep: str = ",") -> bytes:
    """A body past the real thresholds: ``tokens`` repeated to about 100 KiB, flat or nested."""
    reps = max(1, 100_000 // len(sep.join(tokens)))
    flat = tokens * reps
    shape = [len(flat)] if nested is None else [reps, *nested]
    text = nest(flat, shape if nested is not None else [len(flat)], sep)
    return with_data({"name": "X", "datatype": datatype, "shape": shape}, text)


VALID_TABLE = [
    ("FP32", ["0.123456", "-0", "-0.0", "1e-45", "3.4028235e38", "-3.4028234663852886e38", "7"]),
    ("FP64", ["1.7976931348623157e308", "-1.7976931348623157e308", "5e-324", "0.30000000000000004", "-0"]),
    ("FP16", ["65504", "-65504.0", "6e-08", "0.1", "1", "-0"]),
    ("BF16", ["3.3895313892515355e38", "1.00390625", "-2.5", "1e-40", "0"]),
    ("UINT64", ["18446744073709551615", "9223372036854775808", "0", "1", "-0"]),
    ("UINT64", ["18446744073709551615", "18446744073709551614"]),
    ("INT64", ["-9223372036854775808", "9223372036854775807", "0", "-1"]),
    ("UINT8", ["0", "255", "17"]),
    ("INT8", ["-128", "127", "0"]),
    ("UINT16", ["65535", "0"]),
    ("INT16", ["-32768", "32767"]),
    ("UINT32", ["4294967295", "0"]),
    ("INT32", ["-2147483648", "2147483647"]),
    ("FP32", ["1", "2", "3", "16777217"]),  # integers only: an int64 array before FP32
]


@pytest.mark.parametrize("datatype, tokens", VALID_TABLE)
@pytest.mark.parametrize("layout", ["flat", "nested", "blanks"])
def test_table_of_valid_bodies(datatype: str, tokens: list[str], layout: str) -> None:
    if layout == "flat":
        body = big(datatype, tokens)
    elif layout == "nested":
        body = big(datatype, tokens, nested=[len(tokens)])
    else:
        body = big(datatype, tokens, nested=[1, len(tokens)], sep=" ,\n\t\r ")
        body = body.replace(b'"data":[', b'"data" :\n [ ')
    want = assert_same(body, fast=True)
    assert want[0] == "ok"


INVALID_TABLE = [
    # (datatype, tokens, nested, message the exact path gives, whether the chunked path names it itself)
    ("UINT8", ["1", "300"], None, "value 300 is out of range for UINT8", True),
    ("INT8", ["-129", "0"], None, "value -129 is out of range for INT8", True),
    ("UINT64", ["-1", "18446744073709551615"], None, "value -1 is out of range for UINT64", True),
    ("INT64", ["9223372036854775808", "1"], None, "value 9223372036854775808 is out of range for INT64", True),
    ("UINT64", ["18446744073709551616", "0"], None, "UINT64 data must be integers, got floating-point", True),
    ("INT32", ["1.5", "2"], None, "INT32 data must be integers, got floating-point numbers", True),
    ("INT32", ["1", "2e0"], None, "INT32 data must be integers, got floating-point numbers", True),
    ("FP32", ["1.0", "3.4028235677973366e38"], None, "value 3.4028235677973366e.38 is out of range for FP32", True),
    ("FP32", ["1", "-1e39"], None, r"value -1e\+39 is out of range for FP32", True),
    ("FP16", ["1", "1000000"], None, "value 1000000 is out of range for FP16", True),
    ("FP16", ["1.5", "1000000"], None, r"value 1000000\.0 is out of range for FP16", True),
    ("BF16", ["3.4e38"], None, "is out of range for BF16", True),
    ("FP32", ["1", "1e400"], None, "not valid JSON", False),
    ("FP32", ["1", "+1"], None, "not valid JSON", False),
    ("FP32", ["1", ".5"], None, "not valid JSON", False),
    ("FP32", ["1", "1."], None, "not valid JSON", False),
    ("FP32", ["1", "01"], None, "not valid JSON", False),
    ("FP32", ["1", "nan"], None, "not valid JSON", False),
    ("FP32", ["1", "0x10"], None, "not valid JSON", False),
    ("FP32", ["1", '"2"'], None, "FP32 data must be numbers, got strings", False),
    ("FP32", ["1", "[2]"], None, "ragged", False),
    ("FP32", ["1", "2"], [3], "ragged", False),  # tokens doubled per row below
    ("FP32", ["1", "2"], [1, 2], r"nested as \[\d+, 1, 2\], which does not match shape", False),
    ("FP32", ["1", "2e308"], None, "not valid JSON", False),
    ("FP32", ["9007199254740993", "0.5"], None, None, True),  # past 2**53, in float64 as in one parse
    ("BOOL", ["1", "0"], None, "BOOL data must be true/false, got integers", False),
    ("BYTES", ["1", "0"], None, "BYTES elements must be strings", False),
]


@pytest.mark.parametrize("datatype, tokens, nested, message, named", INVALID_TABLE)
def test_table_of_invalid_bodies(
    datatype: str, tokens: list[str], nested: list[int] | None, message: str | None, named: bool
) -> None:
    body = big(datatype, tokens, nested=[len(tokens)] if nested else None)
    if nested == [3]:  # rows of 2 under a shape whose rows have 3
        body = body.replace(b"[1,2],[1,2]]", b"[1,2],[1,2,1]]", 1)
    elif nested == [1, 2]:  # nested one level deeper than the shape says
        body = big(datatype, tokens, nested=[2]).replace(b'"shape":[', b'"shape":[1,', 1)
        body = body.replace(b"[1,2]", b"[[1,2]]")
    got = assert_same(body, fast=named)
    if message is None:
        assert got[0] == "ok"
    else:
        assert got[0] == "error" and got[1] == "InvalidInputError"
        with pytest.raises(InvalidInputError, match=message):
            oip_json.decode_request(body)


def test_duplicate_data_keys_mean_what_orjson_makes_of_them() -> None:
    big_data = b"[" + b"1," * 40000 + b"1]"
    head = b'{"inputs":[{"name":"X","datatype":"FP32","shape":[40001],"data":'
    assert_same(head + big_data + b',"data":[1]}]}', fast=False)  # the last one counts
    assert_same(head + b'[1],"data":' + big_data + b"}]}", fast=True)


def test_integers_past_2_53_are_left_to_the_exact_path_when_floats_come_later() -> None:
    # The exact path converts them to float64 before FP32 (floats elsewhere make the whole
    # array float64); a chunk of integers alone would convert them directly.
    body = with_data({"name": "X", "datatype": "FP32", "shape": [50001]}, "[" + "9007199254740993," * 50000 + "0.5]")
    assert assert_same(body, fast=False)[0] == "ok"
    body = body.replace(b"0.5]", b"1]")
    assert assert_same(body, fast=True)[0] == "ok"


def test_flat_count_mismatch_is_named_by_the_chunked_path() -> None:
    body = big("FP32", ["0.5", "1.5"]).replace(b'"shape":[', b'"shape":[7', 1)
    assert_same(body, fast=True)
    with pytest.raises(InvalidInputError, match=r"'data' has \d+ elements, shape \[7\d+\] needs 7\d+"):
        oip_json.decode_request(body)


TRAPS = [
    # Arrays of numbers that are not 'data' values: the exact path decides, and agrees.
    b'{"id":"[' + b"1," * 40000 + b'1]","inputs":[{"name":"X","datatype":"FP32","shape":[1],"data":[1]}]}',
    b'{"id":"\\[' + b"1," * 40000 + b'1]","inputs":[{"name":"X","datatype":"FP32","shape":[1],"data":[1]}]}',
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[1],"data":"[' + b"1," * 40000 + b'1]"}]}',
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[1],"data":[1],"parameters":{"p":[' + b"1," * 40000 + b"1]}}]}",
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[40001],"data":[' + b"1," * 40000 + b'1]}],"x":[',
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[40001],"data":[' + b"1," * 40000 + b"1,]}]}",
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[40001],"data":[' + b"1," * 40000 + b"1]]}]}",
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[40001],"data":[' + b"1," * 40000 + b"1]}]",
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[40001],"data":[' + b"1," * 40000 + b"1]}]} x",
    b"[" + b"1," * 40000 + b"1]",
    b'{"inputs":[[' + b"1," * 40000 + b"1]]}",
    b'{"inputs":[{"name":"X","datatype":"FP32","shape":[40001],"data":[' + b"1," * 40000 + b"1]}], \xff}",
]


@pytest.mark.parametrize("body", TRAPS, ids=range(len(TRAPS)))
def test_numeric_arrays_elsewhere_leave_the_body_to_the_exact_path(body: bytes) -> None:
    assert_same(body, fast=False)


def test_several_large_inputs_and_an_error_in_the_last() -> None:
    good = {"name": "A", "datatype": "FP32", "shape": [30000], "data": [0.25] * 30000}
    bad = {"name": "B", "datatype": "UINT8", "shape": [40000], "data": [7] * 39999 + [256]}
    assert_same(request(good, good | {"name": "C"}), fast=True)
    assert_same(request(good, bad), fast=True)
    # A syntax error in a later array wins over a range error in an earlier one, as in one parse.
    body = request(bad, good).replace(b"0.25,0.25]", b"0.25,0.25,]")
    assert assert_same(body, fast=False)[2].startswith("request body is not valid JSON")
    # An error before the data of an input wins over everything in that data.
    assert "'name' must be" in assert_same(request(bad | {"name": 5}), fast=True)[2]


def test_small_bodies_take_the_exact_path_at_the_default_thresholds() -> None:
    small = request({"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]})
    assert json_numbers.loads_large(small) is None
    assert json_numbers.loads_large(small + b" " * json_numbers.MIN_BODY_BYTES) is None  # no large array
    assert_same(small)


# --- memory and the GIL --------------------------------------------------------------------------

MIB = 1 << 20


def fp32_body(mib: int) -> tuple[bytes, int]:
    """A flat FP32 body of about ``mib`` MiB of numbers like 0.123456 (one 1 MiB block repeated)."""
    rng = np.random.default_rng(7)
    block = ",".join(f"{v:.6f}" for v in rng.random(MIB // 9)).encode()
    n = (MIB // 9) * mib
    head = b'{"inputs":[{"name":"X","datatype":"FP32","shape":[%d],"data":[' % n
    # One join, so that making the body takes no more memory than the body.
    body = b"".join([head, block, *[b"," + block] * (mib - 1), b"]}]}"])
    return body, n


MEMORY_SCRIPT = textwrap.dedent(
    """
    import gc, sys
    sys.path.insert(0, {root!r})
    from tests.codecs.test_large_json import fp32_body
    from omi_adapters.codecs import oip_json
    body, n = fp32_body({mib})
    oip_json.decode_request(fp32_body(1)[0])  # imports and first-call allocations
    gc.collect()
    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key)) * 1024
    before = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from the RSS now
    request = oip_json.decode_request(body)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking process (pytest, large
    # by now) across exec.
    peak = status("VmHWM:")
    assert request.inputs[0].data.shape == (n,)
    print((peak - before) / len(body))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_64_mib_fp32_body_takes_at_most_3_5_times_its_size() -> None:
    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    script = MEMORY_SCRIPT.format(root=root, mib=64)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True, cwd=root
    )
    factor = float(result.stdout.split()[-1])
    print(f"peak memory growth: {factor:.2f}x the body")
    assert factor <= 3.5, f"peak memory grew by {factor:.2f}x the body"


def test_decoding_a_64_mib_body_in_a_thread_leaves_the_gil_to_others() -> None:
    body, n = fp32_body(64)
    done = threading.Event()
    result: list[Any] = []

    def decode() -> None:
        try:
            result.append(oip_json.decode_request(body))
        finally:
            done.set()

    gaps: list[float] = []
    thread = threading.Thread(target=decode)
    thread.start()
    while not done.is_set():
        start = time.perf_counter()
        time.sleep(0.001)
        gaps.append(time.perf_counter() - start)
    thread.join()
    assert result and result[0].inputs[0].data.shape == (n,)
    assert len(gaps) > 20  # the decode took long enough for the measure to mean something
    # Today's worst case is a few ms; one parse of the whole body held the GIL for about a second.
    print(f"longest wait of the main thread: {max(gaps) * 1000:.1f} ms over {len(gaps)} sleeps")
    assert max(gaps) < 0.2, f"the main thread waited {max(gaps) * 1000:.0f} ms"
