"""A real tritonserver for the Triton tests: installed once (cached under .tools/), started once
per session on free loopback ports, serving a repository built by `omi build triton`."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omi_adapters.cli import main as omi
from omi_adapters.targets import load_target

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
IRIS_ARTIFACT = EXAMPLES / "iris" / "iris.joblib"
#: Built in one `omi build triton` run; iris is built separately, with its artifact included.
TARGETS = [str(EXAMPLES / "adder.py"), str(EXAMPLES / "text.py"), str(HERE / "models.py")]


def _fetch_script() -> Any:
    spec = importlib.util.spec_from_file_location("fetch_tritonserver", ROOT / "scripts" / "fetch_tritonserver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def triton_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("triton") / "repo"
    # The in-process iris model trains its artifact if missing; Triton then serves the same file.
    load_target(f"{EXAMPLES / 'iris' / 'model.py'}:Iris")[0].wait_ready()
    assert omi(["build", "triton", *TARGETS, "--out", str(repo)]) == 0
    assert (
        omi(
            [
                "build",
                "triton",
                str(EXAMPLES / "iris" / "model.py"),
                "--out",
                str(repo),
                "--include",
                str(IRIS_ARTIFACT),
            ]
        )
        == 0
    )
    assert omi(["build", "triton", str(HERE / "broken.py"), "--out", str(repo)]) == 0
    return repo


@pytest.fixture(scope="session")
def triton_install() -> Any:
    """tritonserver and its model environment, installed under .tools/ by the fetch script."""
    return _fetch_script().fetch()


@pytest.fixture(scope="session")
def triton(triton_install: Any, triton_repo: Path) -> Iterator[Any]:
    from omi_triton.server import TritonServer

    server = TritonServer(triton_install, triton_repo)
    server.start(timeout=180)
    server.ready_at = time.time()
    try:
        yield server
    finally:
        server.stop()
