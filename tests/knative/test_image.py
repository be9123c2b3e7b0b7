"""The image of ``omi build knative``, for real: ``make image`` builds it from the wheels of
``make dist`` and the Containerfile ``omi build knative --wheel`` writes, with buildah on a local
Debian base, run under podman with runc, answering OIP REST on ``$PORT`` and stopping
cleanly on SIGTERM (the tooling comes from
scripts/fetch_container_tools.py, and the test is skipped only where apt is unreachable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from omi_adapters import __version__
from tests.servers import ROOT, free_port

IMAGE = "localhost/omi-knative-test-adder:latest"
UNREACHABLE = 3
#: podman here needs runc (crun fails on hybrid cgroups) and explicit ulimits (no CAP_SYS_RESOURCE).
PODMAN_RUN = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_container_tools.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    if done.returncode == UNREACHABLE:
        reason = f"container tooling unavailable, apt is unreachable: {done.stderr.strip()[-300:]}"
        print(reason)
        pytest.skip(reason)
    assert done.returncode == 0, f"scripts/fetch_container_tools.py failed:\n{done.stdout}\n{done.stderr}"
    record: dict[str, str] = json.loads(done.stdout)
    return record


def _run(*command: str, env: dict[str, str], timeout: float = 120, cwd: Path | None = None) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def _logs(name: str, env: dict[str, str]) -> str:
    # podman logs replays the container's stderr (where omi serve logs) on its own stderr.
    done = subprocess.run(["podman", "logs", name], env=env, capture_output=True, text=True, check=False, timeout=60)
    return done.stdout + done.stderr


@pytest.mark.timeout(1500)
def test_image_builds_runs_under_podman_and_answers_rest(tmp_path: Path, tools: dict[str, str]) -> None:
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": tools["storage_conf"]}
    # `make image`: the wheels of `make dist`, the Containerfile of `omi build knative --wheel`,
    # buildah. A fixed timestamp keeps the wheels, and so the image's cached layers, the same
    # while the source is; the venv running the tests is the one make would set up.
    context = tmp_path / "context"
    _run("make", "-s", "-o", ".venv/.installed", f"BIN={Path(sys.executable).parent}", f"DIST={tmp_path / 'dist'}",
         f"IMAGE_CONTEXT={context}", f"IMAGE={IMAGE}", f"BASE={tools['base_image']}",
         "BUILDAH_FLAGS=--isolation chroot", "SOURCE_DATE_EPOCH=1700000000", "image",
         env=env, cwd=ROOT, timeout=1200)  # fmt: skip
    assert (context / "wheels" / f"omi_adapters-{__version__}-py3-none-any.whl").is_file()
    inspect = json.loads(_run("podman", "image", "inspect", IMAGE, env=env))[0]
    labels = inspect["Config"]["Labels"]
    assert json.loads(labels["ml.openmodel.interfaces"]) == ["kfserving"]
    assert json.loads(labels["ml.openmodel.protocols"]) == [["v2"]]
    assert labels["ml.openmodel.port"] == "8080" and labels["ml.openml.model_name"] == "adder"
    assert {"INTERFACE=kfserving", "HTTP_PORT=8080", "PROTOCOL=v2", "MODEL_NAME=adder"} <= set(inspect["Config"]["Env"])

    _serves(IMAGE, env)


def _serves(image: str, env: dict[str, str]) -> None:
    """Run ``image`` as Knative would (``$PORT``, ``K_*``), infer once, stop it with SIGTERM: exit 0."""
    # Host networking: the container listens on $PORT, as Knative tells it to.
    port = free_port()
    name = f"omi-knative-test-{uuid.uuid4().hex[:8]}"
    _run("podman", "run", "-d", *PODMAN_RUN, "--network", "host", "--name", name,
         "-e", f"PORT={port}", "-e", "K_SERVICE=adder", "-e", "K_REVISION=adder-00001", image, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, OSError):
                logs = _logs(name, env)
                assert time.monotonic() < deadline, f"the container never became ready:\n{logs}"
                time.sleep(0.2)
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3.5]}]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/adder/infer",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [1, 3], "data": [2.0, 3.0, 4.5]}]

        # podman stop sends SIGTERM: omi serve (PID 1 through exec) drains and exits 0.
        _run("podman", "stop", "-t", "30", name, env=env, timeout=60)
        state = json.loads(_run("podman", "container", "inspect", name, env=env))[0]["State"]
        logs = _logs(name, env)
        assert state["ExitCode"] == 0, logs
        assert "revision adder-00001" in logs and f":{port}" in logs, logs
    finally:
        subprocess.run(["podman", "rm", "-f", name], env=env, capture_output=True, check=False)
        # Drop images the rebuild left untagged; the tagged image keeps its layers for the next run.
        subprocess.run(["podman", "image", "prune", "-f"], env=env, capture_output=True, check=False)


@pytest.mark.timeout(1500)
def test_an_image_builds_from_the_checkout_without_any_wheel_given(tmp_path: Path, tools: dict[str, str]) -> None:
    # As a user of a checkout would: no PyPI release, no --wheel; omi build knative puts the
    # checkout's own wheel beside the Containerfile.
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": tools["storage_conf"]}
    context = tmp_path / "context"
    image = "localhost/omi-knative-test-checkout:latest"
    _run(sys.executable, "-m", "omi_adapters.cli", "build", "knative", "examples/adder.py", "--out", str(context),
         "--image", image, "--base", tools["base_image"], env=env, cwd=ROOT)  # fmt: skip
    assert (context / "wheels" / f"omi_adapters-{__version__}-py3-none-any.whl").is_file()
    _run("buildah", "bud", "--layers", "--isolation", "chroot", "-t", image, "-f", str(context / "Containerfile"),
         str(context), env=env, cwd=ROOT, timeout=1200)  # fmt: skip
    _serves(image, env)
