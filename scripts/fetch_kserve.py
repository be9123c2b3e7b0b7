#!/usr/bin/env python3
"""Install KServe's Python SDK, once, into a virtual environment of its own under ``.tools/`` (gitignored).

The tests drive ``omi serve`` with KServe's own clients (``InferenceRESTClient``,
``InferenceGRPCClient``). ``kserve`` pins grpcio, protobuf, fastapi and others at versions of its
own, so it never goes into the project's environment: it lives in
``.tools/kserve-venv-VERSION``, and the tests run a driver script with that interpreter.

Idempotent and safe to run concurrently (a file lock; a marker written last, an unfinished venv
built again). Prints ``{"python": PATH}`` as JSON. Exit status 3, with the reason on stderr,
when the package index cannot be reached (the tests then skip); 1 for any other failure.

    python scripts/fetch_kserve.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from tool_lock import locked

KSERVE_VERSION = "0.21.0"
ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
HOME = TOOLS / f"kserve-venv-{KSERVE_VERSION}"
#: Exit status meaning "the package index cannot be reached".
UNREACHABLE = 3


def python_path() -> Path:
    return HOME / "bin" / "python"


def _pip(python: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=False,
        capture_output=True,
        text=True,
    )


def _index_reachable() -> bool:
    """Whether pip can fetch the kserve wheel itself (no dependencies): the index answers."""
    with tempfile.TemporaryDirectory() as tmp:
        return _pip(sys.executable, "download", "--no-deps", f"kserve=={KSERVE_VERSION}", "-d", tmp).returncode == 0


def fetch() -> int:
    """Create the venv holding kserve (nothing if it is complete); an exit status."""
    done = HOME / ".complete"
    if done.is_file():
        return 0
    # A venv's scripts name their interpreter by absolute path, so it is built in place.
    if HOME.exists():
        shutil.rmtree(HOME)
    venv.EnvBuilder(with_pip=True).create(HOME)
    installed = _pip(python_path(), "install", f"kserve=={KSERVE_VERSION}")
    if installed.returncode != 0:
        shutil.rmtree(HOME, ignore_errors=True)
        if not _index_reachable():
            print(f"the package index cannot be reached to install kserve=={KSERVE_VERSION}", file=sys.stderr)
            return UNREACHABLE
        print(f"pip install kserve=={KSERVE_VERSION} failed:\n{installed.stdout}\n{installed.stderr}", file=sys.stderr)
        return 1
    done.write_text(KSERVE_VERSION + "\n")
    return 0


def main() -> int:
    with locked(TOOLS / ".kserve.lock"):
        status = fetch()
    if status == 0:
        print(json.dumps({"python": str(python_path())}))
    return status


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
