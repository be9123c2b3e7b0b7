"""A bounded soak: 16 clients, REST and gRPC, mixing good, malformed, oversized and slow requests
against one `omi serve` for about a minute. No good request is lost, nothing but the model's own
failures is a 5xx, and the server's memory stays under a stated bound."""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.conftest import EXAMPLES
from tests.servers import serve

pytestmark = pytest.mark.timeout(300)

SECONDS = 50.0
CLIENTS = 16  # half REST, half gRPC
MAX_MESSAGE = 4 * 1024 * 1024
#: The server's resident memory may not pass this (the generated manifests give a pod 512M).
RSS_BOUND = 256 * 1024 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _adder_json(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "X", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}


class Tally:
    """What every client saw, by kind of request and outcome."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.wrong: list[str] = []

    def add(self, kind: str, outcome: str, problem: str | None = None) -> None:
        with self.lock:
            self.counts[(kind, outcome)] += 1
            if problem:
                self.wrong.append(f"{kind}: {problem}")


def _rest_client(url: str, until: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=f"http://{url}", timeout=30) as client:
        while time.monotonic() < until:
            kind = rng.choice(["good", "good", "good", "malformed", "oversized", "slow", "failing", "trickle"])
            if kind == "good":
                x = np.asarray(rng.sample(range(-1000, 1000), 6), dtype=np.float32).reshape(2, 3) / 8
                response = client.post("/v2/models/adder/infer", json=_adder_json(x))
                ok = (
                    response.status_code == 200
                    and response.json()["outputs"][0]["data"] == (x + 1).reshape(-1).tolist()
                )
                tally.add(kind, str(response.status_code), None if ok else response.text[:200])
            elif kind == "malformed":
                body = rng.choice(
                    [b"{not json", b'{"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}]}']
                )
                response = client.post("/v2/models/adder/infer", content=body)
                tally.add(kind, str(response.status_code), None if response.status_code == 400 else response.text[:200])
            elif kind == "oversized":
                body = b'{"inputs": [' + b" " * (MAX_MESSAGE + 1) + b"]}"
                try:
                    response = client.post("/v2/models/adder/infer", content=body)
                except httpx.TransportError:  # refused before the upload finished: the connection is cut
                    tally.add(kind, "cut")
                    continue
                tally.add(kind, str(response.status_code), None if response.status_code == 413 else response.text[:200])
            elif kind == "slow":
                response = client.post("/v2/models/slow/infer", json={
                    "inputs": [{"name": "SECONDS", "datatype": "FP32", "shape": [1], "data": [0.2]}]
                })  # fmt: skip
                tally.add(kind, str(response.status_code), None if response.status_code == 200 else response.text[:200])
            elif kind == "failing":
                response = client.post("/v2/models/failing/infer", json={
                    "inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [-1]}]
                })  # fmt: skip
                ok = response.status_code == 500 and "cannot take negative numbers" in response.json()["error"]
                tally.add(kind, str(response.status_code), None if ok else response.text[:200])
            else:
                tally.add(kind, _trickle(url))


def _trickle(url: str) -> str:
    """A slow client: its body arrives in pieces over half a second; it is served all the same."""
    host, port = url.rsplit(":", 1)
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    body = json.dumps(_adder_json(x)).encode()
    head = f"POST /v2/models/adder/infer HTTP/1.1\r\nHost: {url}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        for start in range(0, len(body), len(body) // 5 + 1):
            time.sleep(0.1)
            sock.sendall(body[start : start + len(body) // 5 + 1])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "no answer"


def _grpc_client(url: str, until: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    options = [("grpc.max_send_message_length", 2 * MAX_MESSAGE)]
    with grpc.insecure_channel(url, options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < until:
            kind = rng.choice(["good", "good", "good", "malformed", "oversized", "slow", "failing"])
            request = service_pb2.ModelInferRequest(model_name="adder")
            expected = None
            if kind == "good":
                x = np.asarray(rng.sample(range(-1000, 1000), 4), dtype=np.float32) / 4
                request.inputs.add(name="X", datatype="FP32", shape=[2, 2])
                request.raw_input_contents.append(x.tobytes())
                expected = (x + 1).tobytes()
            elif kind == "malformed":
                request.inputs.add(name="X", datatype="FP32", shape=[2, 2])
                request.raw_input_contents.append(b"\x00" * 7)
            elif kind == "oversized":
                request.inputs.add(name="X", datatype="FP32", shape=[MAX_MESSAGE // 4 + 16, 1])
                request.raw_input_contents.append(b"\x00" * (MAX_MESSAGE + 64))
            elif kind == "slow":
                request.model_name = "slow"
                request.inputs.add(name="SECONDS", datatype="FP32", shape=[1])
                request.raw_input_contents.append(struct.pack("<f", 0.2))
            else:
                request.model_name = "failing"
                request.inputs.add(name="X", datatype="INT32", shape=[1])
                request.raw_input_contents.append(struct.pack("<i", -1))
            want = {
                "good": grpc.StatusCode.OK,
                "slow": grpc.StatusCode.OK,
                "malformed": grpc.StatusCode.INVALID_ARGUMENT,
                "oversized": grpc.StatusCode.RESOURCE_EXHAUSTED,
                "failing": grpc.StatusCode.INTERNAL,
            }[kind]
            try:
                reply = stub.ModelInfer(request, timeout=30)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code, reply = exc.code(), None
            problem = None if code == want else f"{code} (wanted {want})"
            if expected is not None and reply is not None and reply.raw_output_contents[0] != expected:
                problem = "wrong answer"
            tally.add(f"grpc-{kind}", code.name, problem)


def test_soak_loses_no_good_request_and_stays_in_its_memory() -> None:
    targets = (EXAMPLES / "adder.py", "tests/serving/models.py:slow", "tests/serving/models.py:failing")
    args = ("--max-message-bytes", str(MAX_MESSAGE), "--request-timeout", "10")
    with serve(*targets, protocols=("rest", "grpc"), args=args) as srv:
        tally = Tally()
        until = time.monotonic() + SECONDS
        clients: list[tuple[Callable[..., None], str]] = [
            (_rest_client, srv.http_url) if i % 2 == 0 else (_grpc_client, srv.grpc_url) for i in range(CLIENTS)
        ]
        threads = [threading.Thread(target=fn, args=(url, until, i, tally)) for i, (fn, url) in enumerate(clients)]
        for thread in threads:
            thread.start()
        peak = 0
        while any(t.is_alive() for t in threads):
            peak = max(peak, _rss(srv.proc.pid))
            time.sleep(0.25)
        for thread in threads:
            thread.join()
        assert srv.proc.poll() is None, srv.output()[-3000:]
        assert httpx.get(f"http://{srv.http_url}/v2/health/live").status_code == 200
        assert srv.terminate() == 0
    counts = dict(tally.counts)
    assert tally.wrong == [], (tally.wrong[:10], counts)
    served = sum(n for (kind, outcome), n in counts.items() if kind in ("good", "grpc-good"))
    assert served > 1000, counts  # the soak did soak
    # Every kind was exercised, and the only 5xx are the model's own failures.
    assert {kind for kind, _ in counts} >= {"good", "malformed", "oversized", "slow", "failing", "trickle",
                                             "grpc-good", "grpc-oversized", "grpc-slow"}  # fmt: skip
    fives = {key: n for key, n in counts.items() if key[1].startswith("5") and key[0] != "failing"}
    assert fives == {}, counts
    assert peak < RSS_BOUND, f"peak RSS {peak / 2**20:.0f} MiB, {counts}"
