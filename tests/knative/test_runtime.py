"""Knative's runtime contract, end to end against a real ``omi serve``: it listens on ``$PORT``
without a port flag, logs ``K_SERVICE``/``K_REVISION``, says 503 until every model is loaded,
and on SIGTERM stops accepting, answers the request in flight and exits 0 (Knative's
runtime contract)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import ROOT, free_port

MODELS = Path(__file__).resolve().parent / "knative_models.py"


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_port_env_readiness_and_sigterm_drain(tmp_path: Path) -> None:
    port = free_port()
    marker = tmp_path / "in-flight"
    gate = tmp_path / "loaded"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "K_SERVICE": "slow",
        "K_CONFIGURATION": "slow",
        "K_REVISION": "slow-00001",
        "OMI_TEST_MARKER": str(marker),
        "OMI_TEST_DELAY": "2.5",
        "OMI_TEST_GATE": str(gate),
    }
    # No --http-port: the server must take $PORT, as a Knative revision's container does.
    command = [sys.executable, "-m", "omi_adapters.cli", "serve", f"{MODELS}:slow", f"{MODELS}:Warming",
               "--host", "127.0.0.1", "--protocols", "rest", "--graceful-timeout", "20"]  # fmt: skip
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            ready_url = f"http://127.0.0.1:{port}/v2/health/ready"
            statuses: list[int] = []
            deadline = time.monotonic() + 60
            while not statuses or statuses[-1] != 200:
                assert proc.poll() is None and time.monotonic() < deadline, _output(log)
                try:
                    statuses.append(_get(ready_url))
                except (urllib.error.URLError, OSError):
                    time.sleep(0.05)
                    continue
                if len(statuses) == 3:
                    gate.touch()  # the background model may finish loading now
                time.sleep(0.05)
            # Not ready while the background model loads, ready once it has.
            assert statuses[:3] == [503, 503, 503] and statuses[-1] == 200, statuses

            answer: dict[str, Any] = {}

            def infer() -> None:
                body = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": [1, 2]}]})
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v2/models/slow/infer",
                    data=body.encode(),
                    headers={"content-type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer["status"] = response.status
                    answer["body"] = json.loads(response.read())

            client = threading.Thread(target=infer)
            client.start()
            deadline = time.monotonic() + 10
            while not marker.exists():
                assert time.monotonic() < deadline, "the slow request never reached the model"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)

            # While the request is still running, the port stops taking new connections.
            deadline = time.monotonic() + 2
            while not _refused(port):
                assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
                time.sleep(0.05)
            assert client.is_alive(), "the slow request ended before the port closed"

            client.join(timeout=30)
            assert proc.wait(timeout=30) == 0, _output(log)
            assert answer["status"] == 200, answer
            assert answer["body"]["outputs"][0]["data"] == [2.0, 4.0]
            output = _output(log)
            assert "slow-00001" in output and "Knative service slow" in output, output
            assert f":{port}" in output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _output(log: Any) -> str:
    log.flush()
    log.seek(0)
    return str(log.read())
