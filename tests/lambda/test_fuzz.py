"""Generated events through the Lambda handler, in process: AWS's own sample HTTP events with
fields replaced by anything, and direct invocations of any shape. The handler always returns an
answer (an HTTP response under 500, or a direct response or error object), never raises."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES

from .events import SAMPLES, http_event

anything = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
GOOD = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
bodies = st.sampled_from([json.dumps(GOOD).encode(), b"", b"{", b"\xff\xfe"]) | anything.map(
    lambda doc: json.dumps(doc).encode()
)
paths = st.sampled_from(["/v2/models/adder/infer", "/v2/health/ready", "/v2/models/adder", "/v2", "/nope", ""])
fields = st.sampled_from(
    ["body", "isBase64Encoded", "headers", "multiValueHeaders", "httpMethod", "path", "rawPath", "requestContext",
     "queryStringParameters", "rawQueryString", "version", "routeKey", "cookies"]
)  # fmt: skip


@pytest.fixture(scope="module")
def handler() -> Iterator[Any]:
    import sys

    from omi_lambda import build_handler

    sys.path.insert(0, str(EXAMPLES))
    try:
        import adder as module
    finally:
        sys.path.remove(str(EXAMPLES))
    made = build_handler(module.adder)
    yield made
    made.close()


@pytest.fixture(scope="module")
def samples(events_dir: Path) -> dict[str, dict[str, Any]]:
    return {kind: http_event(events_dir, kind, "POST", "/v2/models/adder/infer") for kind in SAMPLES}


@pytest.mark.timeout(300)
@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_generated_events_always_get_an_answer(handler: Any, samples: dict[str, dict[str, Any]], data: Any) -> None:
    if data.draw(st.booleans(), "direct"):
        incoming: Any = data.draw(
            anything | st.fixed_dictionaries({"inputs": anything}, optional={"model_name": anything})
        )
    else:
        incoming = copy.deepcopy(samples[data.draw(st.sampled_from(sorted(samples)), "kind")])
        body = data.draw(bodies, "body")
        incoming["body"] = base64.b64encode(body).decode()
        for key in ("path", "rawPath"):
            if key in incoming:
                incoming[key] = data.draw(paths, "path")
        for _ in range(data.draw(st.integers(0, 2), "changes")):
            incoming[data.draw(fields, "field")] = data.draw(anything, "value")
    answer = handler(incoming, None)
    assert isinstance(answer, dict)
    if "statusCode" in answer:
        event(f"HTTP {answer['statusCode']}")
        assert answer["statusCode"] < 500, answer
    else:
        event("direct " + ("error" if "error" in answer else "answer"))
        assert (answer.get("error")) or "outputs" in answer, answer
