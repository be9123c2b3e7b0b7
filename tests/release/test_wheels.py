"""The distributions as users get them: ``make dist`` builds the four sdists and wheels (each
wheel from its sdist), they install into a fresh venv with no editable install and no source tree
on ``sys.path``, and ``omi serve`` from there answers an OIP REST infer with examples/adder.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import omi_adapters
from tests.servers import ROOT, free_port

VERSION = omi_adapters.__version__
NAMES = ["omi_adapters", "omi_adapters_lambda", "omi_adapters_knative", "omi_adapters_triton"]
PACKAGES = ["omi_adapters", "omi_lambda", "omi_knative", "omi_triton"]


def _run(*command: str | Path, cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # The venv running the tests is the one make would set up: build with it, never remake it.
    _run("make", "-s", "-o", ".venv/.installed", f"BIN={Path(sys.executable).parent}", f"DIST={out}", "dist", cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def fresh(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the four wheels (and their dependencies from the index, as pinned)."""
    home = tmp_path_factory.mktemp("fresh")
    _run(sys.executable, "-m", "venv", "--without-pip", home / "venv", cwd=home)
    python = home / "venv" / "bin" / "python"
    wheels = {name: dist / f"{name}-{VERSION}-py3-none-any.whl" for name in NAMES}
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-input",
         "-c", ROOT / "requirements" / "constraints.txt",
         f"{wheels['omi_adapters']}[all]", *[wheels[n] for n in NAMES[1:]], cwd=home, timeout=600)  # fmt: skip
    return home


def test_make_dist_builds_an_sdist_and_a_wheel_of_each(dist: Path) -> None:
    expected = {f"{n}-{VERSION}.tar.gz" for n in NAMES} | {f"{n}-{VERSION}-py3-none-any.whl" for n in NAMES}
    assert {p.name for p in dist.iterdir()} == expected


def test_the_fresh_venv_imports_the_installed_wheels(fresh: Path) -> None:
    code = (
        "import json, sys, importlib.metadata as m\n"
        f"import {', '.join(PACKAGES)}\n"
        f"print(json.dumps({{'files': [{', '.join(p + '.__file__' for p in PACKAGES)}], 'path': sys.path,"
        " 'versions': [m.version(n) for n in ['omi-adapters', 'omi-adapters-lambda', 'omi-adapters-knative',"
        " 'omi-adapters-triton']], 'version': omi_adapters.__version__}))"
    )
    found = json.loads(_run(fresh / "venv" / "bin" / "python", "-c", code, cwd=fresh))
    site = str(fresh / "venv" / "lib")
    assert all(f.startswith(site) for f in found["files"]), found["files"]
    assert not [p for p in found["path"] if p.startswith(str(ROOT))], found["path"]
    assert found["versions"] == [VERSION] * 4 and found["version"] == VERSION
    editable = [p.name for p in (fresh / "venv" / "lib").glob("python*/site-packages/*") if "editable" in p.name]
    assert not editable


def _wait_ready(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"omi serve exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, "omi serve never became ready"
        time.sleep(0.2)


@pytest.fixture
def served(fresh: Path) -> Iterator[int]:
    # The model file alone, beside nothing of the repository.
    shutil.copy(ROOT / "examples" / "adder.py", fresh / "adder.py")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    command = [str(fresh / "venv" / "bin" / "omi"), "serve", "adder.py", "--host", "127.0.0.1",
               "--http-port", str(port), "--protocols", "rest"]  # fmt: skip
    log = fresh / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=fresh, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            _wait_ready(proc, port)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{log.read_text()[-3000:]}") from None
        yield port
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_omi_serve_from_the_wheels_answers_a_rest_infer(served: int) -> None:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3.5]}]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{served}/v2/models/adder/infer",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [1, 3], "data": [2.0, 3.0, 4.5]}]
