"""chassis' own published OMI messages (PyPI ``chassisml-protobuf``), for tests by a client nobody here wrote.

The package pins protobuf < 5 and names its messages exactly as ours do (no proto package), so
it is never installed into the venv nor imported beside our generated code: :func:`fetch`
unpacks its wheel once into ``.tools/`` and :func:`run_client` runs it in a child process.
Run ``python -m tests.omi.chassis`` to fetch it ahead of the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

REQUIREMENT = "chassisml-protobuf==4.0.0"
TOOLS = ROOT / ".tools" / "chassisml-protobuf-4.0.0"
MODULE = TOOLS / "chassis" / "protos" / "v1" / "model_pb2.py"


def fetch() -> Path:
    """Download and unpack the wheel into ``.tools/`` unless it is there already."""
    if MODULE.exists():
        return TOOLS
    staging = TOOLS.with_name(TOOLS.name + f".{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(staging / "wheel"), REQUIREMENT],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if download.returncode != 0:
        raise RuntimeError(f"cannot download {REQUIREMENT} from PyPI:\n{download.stderr}")
    [wheel] = (staging / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging / "site")
    if not MODULE.exists():
        os.replace(staging / "site", TOOLS)  # atomic: a concurrent fetch finds all or nothing
    shutil.rmtree(staging, ignore_errors=True)
    return TOOLS


def run_client(script: str, *args: str) -> Any:
    """Run ``script`` with chassis' ``model_pb2`` importable as ``m``; return the JSON it prints."""
    env = {**os.environ, "PYTHONPATH": str(fetch())}
    prelude = "import json, sys\nfrom chassis.protos.v1 import model_pb2 as m\n"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", prelude + script, *args],
        capture_output=True, text=True, env=env, cwd=TOOLS, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


if __name__ == "__main__":
    print(fetch())
