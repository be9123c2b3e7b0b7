"""`omi serve --reload`: a changed model file is served after the edit, without a restart by hand;
a broken edit is reported and the next good one serves again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.servers import serve

pytestmark = pytest.mark.timeout(120)

MODEL = """
import numpy as np
from omi_adapters import Tensor, model


@model(name="edited", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
def edited(X):
    return X + {step}
"""
BODY = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1]}]}


def _answer(url: str) -> float | None:
    try:
        response = httpx.post(f"http://{url}/v2/models/edited/infer", json=BODY, timeout=5)
    except httpx.TransportError:
        return None  # between two servers
    return float(response.json()["outputs"][0]["data"][0]) if response.status_code == 200 else None


def _wait_for(url: str, value: float, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (got := _answer(url)) != value:
        assert time.monotonic() < deadline, f"still {got}, not {value}"
        time.sleep(0.2)


def test_an_edited_model_is_served_after_the_edit(tmp_path: Path) -> None:
    path = tmp_path / "edited.py"
    path.write_text(MODEL.format(step=1))
    with serve(path, protocols=("rest",), args=("--reload",)) as srv:
        _wait_for(srv.http_url, 2.0)
        path.write_text(MODEL.format(step=10))
        _wait_for(srv.http_url, 11.0)
        path.write_text("def broken(:\n")
        time.sleep(2)
        path.write_text(MODEL.format(step=100))
        _wait_for(srv.http_url, 101.0)
        assert srv.terminate() == 0
        assert "SyntaxError" in srv.output()  # the broken edit was reported, and the server went on
