"""gzip and deflate REST bodies, both ways, over a real ``omi serve``: what tritonclient.http sends with
``request_compression_algorithm`` and asks for with ``response_compression_algorithm``."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import EXAMPLES
from tests.servers import Served, serve

pytestmark = pytest.mark.timeout(180)

CODINGS = ["gzip", "deflate", None]
INFLATE = {"gzip": gzip.decompress, "deflate": zlib.decompress}
#: Large enough to be worth compressing both ways (the server leaves replies under 1 KiB alone).
X = (np.arange(3000, dtype=np.float32).reshape(3, 1000) % 17) / 4


@pytest.fixture(scope="module")
def client(server: Served) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url, network_timeout=60)


def _adder_input(binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput("X", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("response", CODINGS, ids=lambda c: f"response-{c}")
@pytest.mark.parametrize("request_", CODINGS, ids=lambda c: f"request-{c}")
def test_tritonclient_compressed_requests_and_responses(
    client: httpclient.InferenceServerClient, request_: str | None, response: str | None, binary: bool
) -> None:
    result = client.infer(
        "adder",
        [_adder_input(binary)],
        model_version="1",
        outputs=[httpclient.InferRequestedOutput("Y", binary_data=binary)],
        request_compression_algorithm=request_,
        response_compression_algorithm=response,
    )
    np.testing.assert_array_equal(result.as_numpy("Y"), X + 1)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compressed_binary_reply_keeps_the_uncompressed_header_length(server: Served, coding: str) -> None:
    """Inference-Header-Content-Length counts the uncompressed JSON header (Triton's binary data docs)."""
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [_adder_input(True)], outputs=[httpclient.InferRequestedOutput("Y", binary_data=True)]
    )
    headers = {"Inference-Header-Content-Length": str(json_size), "Accept-Encoding": coding}
    with (
        httpx.Client(base_url=f"http://{server.http_url}", timeout=60) as http,
        http.stream("POST", "/v2/models/adder/versions/1/infer", content=body, headers=headers) as reply,
    ):
        raw = b"".join(reply.iter_raw())  # as sent, not inflated by httpx
    assert reply.status_code == 200, raw
    assert reply.headers["content-encoding"] == coding
    assert int(reply.headers["content-length"]) == len(raw)
    plain = INFLATE[coding](raw)
    assert len(raw) < len(plain)
    header_length = int(reply.headers["inference-header-content-length"])
    header = json.loads(plain[:header_length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(plain) - header_length == X.nbytes
    np.testing.assert_array_equal(np.frombuffer(plain[header_length:], np.float32).reshape(X.shape), X + 1)
    # tritonclient's own reader of compressed bodies (its aio client's path) gets the same.
    result = httpclient.InferenceServerClient.parse_response_body(
        raw, header_length=header_length, content_encoding=coding
    )
    np.testing.assert_array_equal(result.as_numpy("Y"), X + 1)


@pytest.mark.parametrize(
    ("accept", "coding"),
    [("gzip, deflate", "gzip"), ("deflate;q=1, gzip;q=0.5", "deflate"), ("identity", None), ("gzip;q=0", None)],
)
def test_the_reply_is_compressed_as_accept_encoding_prefers(server: Served, accept: str, coding: str | None) -> None:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": list(X.shape), "data": X.reshape(-1).tolist()}]}
    with httpx.Client(base_url=f"http://{server.http_url}", timeout=60) as http:
        reply = http.post("/v2/models/adder/versions/1/infer", json=body, headers={"Accept-Encoding": accept})
    assert reply.status_code == 200, reply.text
    assert reply.headers.get("content-encoding") == coding
    assert reply.json()["outputs"][0]["data"] == (X + 1).reshape(-1).tolist()  # inflated by httpx


def test_small_replies_and_errors_go_uncompressed(server: Served) -> None:
    small = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    bad = {"inputs": [{"name": "X", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}]}
    with httpx.Client(base_url=f"http://{server.http_url}", timeout=60, headers={"Accept-Encoding": "gzip"}) as http:
        reply = http.post("/v2/models/adder/versions/1/infer", json=small)
        assert reply.status_code == 200 and "content-encoding" not in reply.headers
        assert reply.json()["outputs"][0]["data"] == [2.0, 3.0]
        refused = http.post("/v2/models/adder/versions/1/infer", json=bad)
        assert refused.status_code == 400 and "content-encoding" not in refused.headers


def _post(server: Served, body: bytes, headers: dict[str, str], model: str = "adder") -> httpx.Response:
    with httpx.Client(base_url=f"http://{server.http_url}", timeout=60) as http:
        return http.post(f"/v2/models/{model}/infer", content=body, headers=headers)


def test_an_unknown_content_encoding_is_415_naming_it(server: Served) -> None:
    reply = _post(server, b"(\xb5/\xfd not read", {"Content-Encoding": "zstd"})
    assert reply.status_code == 415
    assert (
        reply.json()["error"]
        == "Content-Encoding 'zstd' is not supported: the request body may be gzip, deflate or identity"
    )
    assert reply.headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": []}', "request body is not valid gzip data (Content-Encoding: gzip): "),
        (gzip.compress(b'{"inputs": []}')[:-6], "request body is truncated gzip data"),
    ],
    ids=["not-gzip", "truncated"],
)
def test_a_corrupt_gzip_body_is_400_naming_the_problem(server: Served, body: bytes, message: str) -> None:
    reply = _post(server, body, {"Content-Encoding": "gzip"})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(message), reply.text
    assert "JSON" not in reply.json()["error"]


def test_inflated_json_that_is_malformed_is_the_json_error(server: Served) -> None:
    reply = _post(server, gzip.compress(b"{not json"), {"Content-Encoding": "gzip"})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("request body is not valid JSON")


LIMIT = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def limited() -> Iterator[Served]:
    args = ["--max-message-bytes", str(LIMIT), "--max-inflight-bytes", str(3 * LIMIT)]
    with serve(EXAMPLES / "adder.py", protocols=("rest",), args=args) as served:
        served.wait_ready()
        yield served


def _peak_rss(served: Served) -> int:
    """The server's peak resident memory so far, in bytes (VmHWM)."""
    for line in Path(f"/proc/{served.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _zeros_gzip(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 24)
    return b"".join(compressor.compress(block) for _ in range(size >> 24)) + compressor.flush()


def test_tritonclient_body_that_inflates_past_the_limit_is_413(limited: Served) -> None:
    client = httpclient.InferenceServerClient(limited.http_url, network_timeout=60)
    zeros = np.zeros((1, 2 * LIMIT // 4), dtype=np.float32)  # 8 MiB of data, some kilobytes of gzip
    tensor = httpclient.InferInput("X", list(zeros.shape), "FP32")
    tensor.set_data_from_numpy(zeros)
    with pytest.raises(InferenceServerException) as error:
        client.infer("adder", [tensor], request_compression_algorithm="gzip")
    assert error.value.status() == "413"
    assert f"request body inflates (gzip) past the limit of {LIMIT} bytes (--max-message-bytes)" in str(error.value)
    # The same array a little smaller than the limit is served.
    fits = np.zeros((1, LIMIT // 8), dtype=np.float32)
    tensor.set_shape(list(fits.shape))
    tensor.set_data_from_numpy(fits)
    result = client.infer("adder", [tensor], request_compression_algorithm="deflate")
    np.testing.assert_array_equal(result.as_numpy("Y"), fits + 1)


def test_a_gzip_bomb_is_refused_without_inflating_it(limited: Served) -> None:
    bomb = _zeros_gzip(1 << 30)  # 1 GiB of zeros in about a megabyte, under the body limit
    assert len(bomb) < LIMIT
    before = _peak_rss(limited)
    reply = _post(limited, bomb, {"Content-Encoding": "gzip"})
    assert reply.status_code == 413
    assert (
        reply.json()["error"] == f"request body inflates (gzip) past the limit of {LIMIT} bytes (--max-message-bytes)"
    )
    # It held at most the limit: far less than the gigabyte it inflates to.
    assert _peak_rss(limited) - before < 4 * LIMIT
    assert _post(limited, gzip.compress(b'{"inputs": []}'), {"Content-Encoding": "gzip"}).status_code == 400


def test_inflated_bytes_count_against_the_bytes_in_flight() -> None:
    # One inflated body of 3 MiB is more than the 2 MiB the server may hold in flight: 503,
    # though its few compressed kilobytes alone would pass.
    args = ["--max-message-bytes", str(LIMIT), "--max-inflight-bytes", str(2 * 1024 * 1024)]
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [1]}], "pad": " " * (3 << 20)}
    with serve(EXAMPLES / "adder.py", protocols=("rest",), args=args) as served:
        served.wait_ready()
        reply = _post(served, gzip.compress(json.dumps(body).encode()), {"Content-Encoding": "gzip"})
        assert reply.status_code == 503, reply.text
        assert "(--max-inflight-bytes)" in reply.json()["error"]
        assert reply.headers["retry-after"] == "1"
        del body["pad"]
        reply = _post(served, gzip.compress(json.dumps(body).encode()), {"Content-Encoding": "gzip"})
        assert reply.status_code == 200, reply.text
