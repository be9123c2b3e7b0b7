"""Prometheus metrics end to end: good and bad requests over REST, OIP gRPC and OMI to a real
``omi serve``, then ``GET /metrics`` parsed with prometheus-client's own parser; every counter and
histogram moved by exactly the traffic sent, errors included. With ``--workers 2`` one scrape
reports the totals of both workers.

The project's own ``inference`` protobuf module is not imported here (tritonclient registers the
same package); OIP gRPC goes through ``tritonclient.grpc``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from omi_adapters.protos import modzy_model_pb2 as omi_pb
from omi_adapters.protos import modzy_model_pb2_grpc as omi_grpc
from tests.conftest import EXAMPLES
from tests.servers import Served, free_port, serve
from tests.serving.test_workers import MODEL as PID_MODEL

pytestmark = pytest.mark.timeout(180)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(srv: Served, port: int | None = None) -> Samples:
    """Every sample of ``GET /metrics``, by name and sorted labels."""
    response = httpx.get(f"http://127.0.0.1:{port or srv.http_port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def moved(before: Samples, after: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """How much each series of ``name`` moved (series that did not move are left out)."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for (sample, labels), value in after.items():
        if sample == name:
            delta = value - before.get((sample, labels), 0.0)
            if delta:
                out[labels] = delta
    return out


def L(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    targets = (EXAMPLES / "adder.py", "tests/serving/models.py:failing")
    with serve(*targets, protocols=("rest", "grpc", "omi"), args=("--omi-model", "adder")) as srv:
        srv.wait_ready()
        yield srv


def _rest(srv: Served, model: str, body: bytes) -> int:
    response = httpx.post(f"http://{srv.http_url}/v2/models/{model}/infer", content=body, timeout=10)
    return response.status_code


def _adder_body(values: list[float]) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, len(values)], "data": values}]}
    ).encode()


def test_every_protocol_moves_the_counters_and_histograms_by_exactly_its_traffic(served: Served) -> None:
    before = scrape(served)

    # REST: 3 good, one invalid (400), one predict that raises (500), one unknown model (404).
    good = [_adder_body([1.0]), _adder_body([1.0, 2.0]), _adder_body([3.0, 4.0, 5.0])]
    bad = b'{"inputs": []}'
    failing = json.dumps({"inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [1]}]}).encode()
    assert [_rest(served, "adder", b) for b in good] == [200, 200, 200]
    assert _rest(served, "adder", bad) == 400
    assert _rest(served, "failing", failing) == 500
    assert _rest(served, "nobody", good[0]) == 404
    rest_bytes = sum(map(len, good)) + len(bad)

    # OIP gRPC: 2 good, one predict that raises, one unknown model, one wrong datatype.
    client = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        for values in ([1.0], [1.0, 2.0]):
            tensor = grpcclient.InferInput("X", [1, len(values)], "FP32")
            tensor.set_data_from_numpy(np.array([values], dtype=np.float32))
            client.infer("adder", [tensor])
        codes = []
        for name, datatype, array in (
            ("failing", "INT32", np.array([1], dtype=np.int32)),
            ("nobody", "FP32", np.array([[1.0]], dtype=np.float32)),
            ("adder", "INT32", np.array([[1]], dtype=np.int32)),
        ):
            tensor = grpcclient.InferInput("X", list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            with pytest.raises(InferenceServerException) as info:
                client.infer(name, [tensor])
            codes.append(info.value.status())
        assert codes == ["StatusCode.INTERNAL", "StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT"]
    finally:
        client.close()

    # OMI: one Run of three items, the last of which is not a valid input.
    items = [b"[[1.0, 2.0]]", b"[[3.0]]", b"[[1.0, 2.0"]
    with grpc.insecure_channel(served.omi_url) as channel:
        stub = omi_grpc.ModzyModelStub(channel)
        reply = stub.Run(omi_pb.RunRequest(inputs=[omi_pb.InputItem(input={"X": i}) for i in items]), timeout=30)
    assert [o.success for o in reply.outputs] == [True, True, False]
    omi_out = sum(len(v) for o in reply.outputs for v in o.output.values())  # the error file too

    after = scrape(served)
    adder = {"model": "adder", "version": "1"}
    fail = {"model": "failing", "version": "1"}
    nobody = {"model": "", "version": ""}
    assert moved(before, after, "omi_requests_total") == {
        L(**adder, protocol="rest", outcome="200"): 3,
        L(**adder, protocol="rest", outcome="400"): 1,
        L(**fail, protocol="rest", outcome="500"): 1,
        L(**nobody, protocol="rest", outcome="404"): 1,
        L(**adder, protocol="grpc", outcome="OK"): 2,
        L(**fail, protocol="grpc", outcome="INTERNAL"): 1,
        L(**nobody, protocol="grpc", outcome="NOT_FOUND"): 1,
        L(**adder, protocol="grpc", outcome="INVALID_ARGUMENT"): 1,
        L(**adder, protocol="omi", outcome="success"): 2,
        L(**adder, protocol="omi", outcome="failure"): 1,
    }
    assert moved(before, after, "omi_request_errors_total") == {
        L(**adder, protocol="rest", error="INVALID_ARGUMENT"): 1,
        L(**fail, protocol="rest", error="INTERNAL"): 1,
        L(**nobody, protocol="rest", error="NOT_FOUND"): 1,
        L(**fail, protocol="grpc", error="INTERNAL"): 1,
        L(**nobody, protocol="grpc", error="NOT_FOUND"): 1,
        L(**adder, protocol="grpc", error="INVALID_ARGUMENT"): 1,
        L(**adder, protocol="omi", error="INVALID_ARGUMENT"): 1,
    }
    assert moved(before, after, "omi_request_duration_seconds_count") == {
        L(**adder, protocol="rest", result="success"): 3,
        L(**adder, protocol="rest", result="failure"): 1,
        L(**fail, protocol="rest", result="failure"): 1,
        L(**nobody, protocol="rest", result="failure"): 1,
        L(**adder, protocol="grpc", result="success"): 2,
        L(**fail, protocol="grpc", result="failure"): 1,
        L(**nobody, protocol="grpc", result="failure"): 1,
        L(**adder, protocol="grpc", result="failure"): 1,
        L(**adder, protocol="omi", result="success"): 2,
        L(**adder, protocol="omi", result="failure"): 1,
    }
    # Every request is in the +Inf bucket of its histogram, and each bucket bound is there up to minutes.
    inf = {
        tuple(p for p in labels if p[0] != "le"): n
        for labels, n in moved(before, after, "omi_request_duration_seconds_bucket").items()
        if ("le", "+Inf") in labels
    }
    assert inf == moved(before, after, "omi_request_duration_seconds_count")
    bounds = {dict(labels)["le"] for (name, labels) in after if name == "omi_request_duration_seconds_bucket"}
    assert {"0.001", "1.0", "60.0", "600.0", "+Inf"} <= bounds

    # The model's own work: 3 + 2 + 2 predict calls of adder, one row each; 2 of failing.
    assert moved(before, after, "omi_predict_duration_seconds_count") == {L(**adder): 7, L(**fail): 2}
    assert moved(before, after, "omi_queue_duration_seconds_count") == {L(**adder): 7, L(**fail): 2}
    assert moved(before, after, "omi_batch_size_count") == {L(**adder): 7, L(**fail): 2}
    assert moved(before, after, "omi_batch_size_sum") == {L(**adder): 7, L(**fail): 2}
    assert all(v > 0 for v in moved(before, after, "omi_predict_duration_seconds_sum").values())

    # Bytes: REST bodies exactly; gRPC messages as protobuf sizes them; OMI items' files exactly.
    request_bytes = moved(before, after, "omi_request_bytes_total")
    assert request_bytes[L(**adder, protocol="rest")] == rest_bytes
    assert request_bytes[L(**adder, protocol="omi")] == sum(map(len, items))
    assert request_bytes[L(**adder, protocol="grpc")] > 0
    response_bytes = moved(before, after, "omi_response_bytes_total")
    assert response_bytes[L(**adder, protocol="omi")] == omi_out
    assert response_bytes[L(**adder, protocol="rest")] > 0 and response_bytes[L(**adder, protocol="grpc")] > 0

    # Nothing in flight or queued once answered; the models are ready, loaded once, no failure.
    for name in ("omi_requests_in_flight", "omi_requests_queued"):
        assert after[name, L(**adder)] == 0 and after[name, L(**fail)] == 0
    assert after["omi_model_state", L(**adder, state="READY")] == 1
    assert after["omi_model_state", L(**adder, state="LOADING")] == 0
    assert after["omi_model_load_duration_seconds_count", L(**adder, result="success")] == 1
    assert after["omi_model_load_failures_total", L(**adder)] == 0
    assert 0 < after["omi_cold_start_seconds", ()] < 60


def test_a_failed_load_is_a_state_a_duration_and_a_failure_on_the_metrics_port_without_rest() -> None:
    port = free_port()
    with serve("tests/serving/models.py:Broken", protocols=("grpc",), args=("--metrics-port", str(port))) as srv:
        time.sleep(1.5)  # the metrics port shows what was flushed, every second
        samples = scrape(srv, port)
    broken = {"model": "broken", "version": "1"}
    assert samples["omi_model_state", L(**broken, state="FAILED")] == 1
    assert samples["omi_model_load_failures_total", L(**broken)] == 1
    assert samples["omi_model_load_duration_seconds_count", L(**broken, result="failure")] == 1
    assert ("omi_cold_start_seconds", ()) not in samples or samples["omi_cold_start_seconds", ()] == 0


def test_with_two_workers_a_scrape_reports_the_totals_of_both_and_buckets_follow_the_flag() -> None:
    port = free_port()
    args = ("--workers", "2", "--metrics-buckets", "0.5,5,300", "--metrics-port", str(port))
    with serve(PID_MODEL, protocols=("rest", "grpc"), args=args) as srv:
        srv.wait_ready()
        # Requests until both workers have answered some (each connection lands on either).
        per_worker: dict[int, int] = defaultdict(int)
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1]}]}
        while len(per_worker) < 2 or sum(per_worker.values()) < 20:
            assert sum(per_worker.values()) < 400, "one worker took every connection"
            response = httpx.post(f"http://{srv.http_url}/v2/models/pid/infer", json=body, timeout=10)
            per_worker[int(response.json()["outputs"][0]["data"][0])] += 1
        sent = sum(per_worker.values())
        pid = {"model": "pid", "version": "1"}
        time.sleep(1.5)  # each worker adds what it counted to the shared files every second
        # Every scrape, whichever worker answers it, reports the totals of both.
        for scraped in (None, None, None, None, port, port):  # either worker's REST port, the supervisor's
            samples = scrape(srv, scraped)
            assert samples["omi_requests_total", L(**pid, protocol="rest", outcome="200")] == sent
            assert samples["omi_predict_duration_seconds_count", L(**pid)] == sent
            assert samples["omi_model_state", L(**pid, state="READY")] == 2  # one per worker
            assert samples["omi_requests_in_flight", L(**pid)] == 0
            bounds = {dict(k[1])["le"] for k in samples if k[0] == "omi_request_duration_seconds_bucket"}
            assert bounds == {"0.5", "5.0", "300.0", "+Inf"}
