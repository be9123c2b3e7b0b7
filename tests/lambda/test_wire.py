"""Lambda's front ends and the REST wire rules: compressed HTTP bodies, BYTES that are not text."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.serving.bytes_models import blobs

from .events import http_event, response_body, response_headers

NOT_TEXT = [b"\xff\x00", b"ok"]
REQUEST = {
    "inputs": [{
        "name": "IN", "datatype": "BYTES", "shape": [2], "data": [base64.b64encode(b).decode() for b in NOT_TEXT],
        "parameters": {"content_type": "base64"},
    }],
}  # fmt: skip


def test_a_direct_invocation_refuses_bytes_json_cannot_carry(make_handler: Any) -> None:
    answer = make_handler(blobs)({**REQUEST, "outputs": [{"name": "SAME"}]})
    assert answer["status_code"] == 400
    assert answer["error"].startswith("output 'SAME': BYTES element 0 is not UTF-8 text, which JSON cannot carry")
    lengths = make_handler(blobs)({**REQUEST, "outputs": [{"name": "LENGTHS"}]})
    assert lengths["outputs"][0]["data"] == [2, 2]


def test_http_events_carry_gzip_bodies_both_ways(make_handler: Any, events_dir: Path) -> None:
    many = {**REQUEST, "inputs": [{**REQUEST["inputs"][0], "shape": [400], "data": REQUEST["inputs"][0]["data"] * 200}]}
    body = gzip.compress(json.dumps({**many, "parameters": {"binary_data_output": True}}).encode())
    headers = {"Content-Encoding": "gzip", "Accept-Encoding": "gzip"}
    event = http_event(events_dir, "rest-api", "POST", "/v2/models/blobs/infer", body, headers)
    answer = make_handler(blobs)(event)
    assert answer["statusCode"] == 200, response_body(answer)
    assert answer["isBase64Encoded"] is True
    sent = response_headers(answer)
    assert sent["content-encoding"] == "gzip"
    plain = gzip.decompress(response_body(answer))
    length = int(sent["inference-header-content-length"])
    offset = length
    found = {}
    for output in json.loads(plain[:length])["outputs"]:
        size = output["parameters"]["binary_data_size"]
        found[output["name"]] = plain[offset : offset + size]
        offset += size
    assert offset == len(plain)
    assert np.frombuffer(found["LENGTHS"], dtype="<i8").tolist() == [2] * 400
    assert found["SAME"][:6] == b"\x02\x00\x00\x00\xff\x00"  # the bytes as they were, length-prefixed
