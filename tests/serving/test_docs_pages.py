"""/docs and /redoc render the OIP operations in a real browser with no network: Swagger UI and
ReDoc come from files installed with the package, not from a CDN."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.servers import serve

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's headless Chromium, installed on first use; skipped only where apt cannot install it."""
    found = shutil.which("chromium")
    if found is None:
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True, timeout=500, check=False
        )
        if done.returncode != 0:
            done = subprocess.run(["sh", "-c", "apt-get update -q && apt-get install -y -q chromium"],
                                  capture_output=True, text=True, timeout=500, check=False)  # fmt: skip
        found = shutil.which("chromium")
        if found is None:
            pytest.skip(f"Chromium cannot be installed here: {(done.stderr or done.stdout).strip()[-300:]}")
    return found


def _render(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run, with every host but loopback unresolvable."""
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000", "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_the_docs_pages_render_the_oip_operations_offline(chromium: str, page: str, tmp_path: Path) -> None:
    with serve(EXAMPLES / "adder.py", protocols=("rest",)) as srv:
        dom = _render(chromium, f"http://{srv.http_url}/{page}", tmp_path / "profile")
    # The operations, as Swagger UI and ReDoc draw them from /openapi.json.
    for path in (
        "/v2/health/live",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}",
    ):
        assert path in dom, dom[:2000]
    assert "Inference" in dom and "Model metadata" in dom
