"""The Containerfile's start command, run on this host: it serves the chosen protocol on
``$PORT`` (Knative) or else ``$HTTP_PORT`` (OMI container spec), and stops with exit 0 on
SIGTERM, for REST (port http1) and for gRPC (port h2c)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from omi_knative.containerfile import APP_DIR

from omi_adapters.cli import main
from tests.servers import ROOT, free_port


def _command(out: Path) -> list[str]:
    line = next(line for line in (out / "Containerfile").read_text().splitlines() if line.startswith("CMD "))
    command: list[str] = json.loads(line[4:])
    # The image's venv is this test's venv.
    return [part.replace(f"{APP_DIR}/venv/bin/", f"{Path(sys.executable).parent}/") for part in command]


def _rest_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _grpc_serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize(("protocol", "variable"), [("rest", "PORT"), ("grpc", "PORT"), ("rest", "HTTP_PORT")])
def test_start_command_serves_on_the_port_it_is_given(tmp_path: Path, protocol: str, variable: str) -> None:
    out = tmp_path / "out"
    argv = ["build", "knative", str(ROOT / "examples" / "adder.py"), "--out", str(out), "--image", "m:1",
            "--protocol", protocol]  # fmt: skip
    assert main(argv) == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HTTP_PORT")}
    env.update({variable: str(port), "PYTHONUNBUFFERED": "1"})
    check = _rest_ready if protocol == "rest" else _grpc_serving
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(_command(out), cwd=out / "model", env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not check(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"the start command did not serve {protocol} on ${variable}:\n{log.read()}")
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)  # the shell exec'd omi: the signal reaches it
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
