"""The gzip and deflate content codings of REST bodies: inflating within a limit, choosing a coding."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from omi_adapters.codecs import compression
from omi_adapters.codecs.compression import Inflater
from omi_adapters.errors import InvalidInputError, PayloadTooLargeError, UnsupportedEncodingError

#: Some text that compresses, some random bytes that do not, and more text.
DATA = b'{"inputs": [1, 2, 3]}' * 5000 + os.urandom(70_000) + b"tail" * 1000


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _inflate(coding: str, body: bytes, limit: int = 10 * len(DATA), step: int | None = None) -> bytes:
    inflater = Inflater(coding, body, limit)
    while not inflater.done:
        inflater.inflate(step)
    return inflater.result()


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # the zlib format, what tritonclient and RFC 9110 call deflate
        ("deflate", _raw_deflate),  # a bare RFC 1951 stream, which some clients send under that name
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
@pytest.mark.parametrize("step", [None, 1000, 1 << 20], ids=["whole", "small-slices", "large-slices"])
def test_bodies_inflate_to_what_was_compressed(coding: str, compress, step: int | None) -> None:
    assert _inflate(coding, compress(DATA), step=step) == DATA


def test_gzip_members_one_after_another_are_one_body() -> None:
    assert _inflate("gzip", gzip.compress(b"first ") + gzip.compress(b"second")) == b"first second"


def test_a_body_exactly_at_the_limit_inflates_and_one_byte_more_is_refused() -> None:
    body = gzip.compress(DATA)
    assert _inflate("gzip", body, limit=len(DATA)) == DATA
    inflater = Inflater("gzip", body, len(DATA) - 1)
    with pytest.raises(PayloadTooLargeError, match=f"past the limit of {len(DATA) - 1} bytes"):
        inflater.inflate()


def test_a_small_body_that_inflates_far_past_the_limit_stops_one_byte_past_it() -> None:
    # 1 GiB of zeros is about a megabyte of gzip: inflating it whole would take the gigabyte.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 24)
    bomb = b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush()
    assert len(bomb) < 2_000_000
    inflater = Inflater("gzip", bomb, 1_000_000)
    with pytest.raises(PayloadTooLargeError, match="request body inflates .gzip. past the limit of 1000000 bytes"):
        inflater.inflate()
    assert inflater.size == 1_000_001


def test_a_slice_inflates_no_more_than_asked() -> None:
    inflater = Inflater("deflate", zlib.compress(DATA), 10 * len(DATA))
    assert inflater.inflate(4096) == 4096
    assert inflater.size == 4096 and not inflater.done
    inflater.inflate()
    assert inflater.done and inflater.result() == DATA


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        ("gzip", b"this is not gzip", "request body is not valid gzip data (Content-Encoding: gzip): "),
        ("deflate", b"\x78\x9c not deflate", "request body is not valid deflate data (Content-Encoding: deflate): "),
        ("gzip", gzip.compress(DATA)[:-100], "request body is truncated gzip data"),
        ("gzip", b"", "request body is truncated gzip data"),
        ("deflate", zlib.compress(DATA)[:1000], "request body is truncated deflate data"),
        ("gzip", gzip.compress(DATA) + b"junk", "request body has 4 bytes after the end of its gzip data"),
        ("deflate", zlib.compress(DATA) + b"\x00\x00", "request body has 2 bytes after the end of its deflate data"),
    ],
    ids=["not-gzip", "not-deflate", "truncated", "empty", "truncated-deflate", "trailing-gzip", "trailing-deflate"],
)
def test_bodies_that_are_not_of_their_coding_are_refused_naming_the_problem(
    coding: str, body: bytes, message: str
) -> None:
    with pytest.raises(InvalidInputError) as error:
        _inflate(coding, body)
    assert not isinstance(error.value, PayloadTooLargeError)
    assert error.value.message.startswith(message), error.value.message


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (b"gzip", "gzip"),
        (b"GZip ", "gzip"),
        (b"x-gzip", "gzip"),
        (b"deflate", "deflate"),
        (b"identity", None),
        (b"", None),
    ],
)
def test_content_encoding_names_a_coding(header: bytes, coding: str | None) -> None:
    assert compression.request_encoding(header) == coding


@pytest.mark.parametrize("header", [b"br", b"zstd", b"gzip, gzip", b"compress", b"gzip;q=1"])
def test_a_content_encoding_the_server_does_not_read_is_refused_naming_it(header: bytes) -> None:
    with pytest.raises(UnsupportedEncodingError) as error:
        compression.request_encoding(header)
    assert repr(header.decode()) in error.value.message
    assert "gzip, deflate or identity" in error.value.message


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip, deflate", "gzip"),  # a tie: the first listed, as Triton's server chooses
        ("deflate, gzip", "deflate"),
        ("gzip;q=0.5, deflate", "deflate"),
        ("gzip;q=0.8, deflate;q=0.9, identity;q=0.1", "deflate"),
        ("identity", None),
        ("identity, gzip;q=0.5", None),
        ("gzip;q=0", None),
        ("*", "gzip"),
        ("gzip;q=0, *", "deflate"),  # '*' is any coding not listed
        ("gzip;q=0, deflate;q=0, *", None),
        ("br, zstd", None),
        ("gzip;q=nonsense, deflate", "deflate"),
        ("", None),
    ],
)
def test_accept_encoding_chooses_the_coding_of_the_highest_weight(header: str, coding: str | None) -> None:
    assert compression.response_encoding(header) == coding


@pytest.mark.parametrize(("coding", "inflate"), [("gzip", gzip.decompress), ("deflate", zlib.decompress)])
def test_responses_compress_from_their_chunks(coding: str, inflate) -> None:
    chunks = [b'{"outputs": []}', memoryview(DATA), b"", memoryview(b"end")]
    assert inflate(compression.compress(chunks, coding)) == b'{"outputs": []}' + DATA + b"end"
