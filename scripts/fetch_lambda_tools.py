#!/usr/bin/env python3
"""Fetch the AWS tools the Lambda tests run, once, into ``.tools/lambda/`` (gitignored).

- ``rie``: the AWS Lambda Runtime Interface Emulator and AWS's sample events. Neither is a
  package of its own; both ship inside the ``aws-sam-cli`` wheel (``samcli/local/rapid/`` and
  ``samcli/lib/generated_sample_events/events/``), so the wheel is downloaded, not installed.
- ``sam``: a virtual environment of its own holding ``aws-sam-cli``, for ``sam validate --lint``
  (about 340 MB; kept apart so that its pins never touch the project's environment).

Idempotent and safe to run concurrently (a file lock guards each step; each result is moved
into place only when complete). Prints the paths as JSON: ``{"rie": ..., "events": ..., "sam": ...}``.

    python scripts/fetch_lambda_tools.py [rie|sam|all]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

from tool_lock import locked

SAM_CLI_VERSION = "1.170.0"
ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools" / "lambda"
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_EVENTS_IN_WHEEL = "samcli/lib/generated_sample_events/events/"


def rie_path() -> Path:
    arch = _ARCH.get(platform.machine().lower(), "x86_64")
    return TOOLS / f"sam-{SAM_CLI_VERSION}" / f"aws-lambda-rie-{arch}"


def events_path() -> Path:
    return TOOLS / f"sam-{SAM_CLI_VERSION}" / "events"


def sam_path() -> Path:
    return TOOLS / f"sam-venv-{SAM_CLI_VERSION}" / "bin" / "sam"


def _pip(python: Path | str, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def fetch_rie() -> None:
    """Download the aws-sam-cli wheel (not its dependencies) and unpack the emulator and events."""
    target = rie_path().parent
    if rie_path().is_file() and events_path().is_dir():
        return
    with tempfile.TemporaryDirectory(dir=TOOLS) as tmp:
        _pip(
            sys.executable, "download", "--no-deps", "--only-binary=:all:", f"aws-sam-cli=={SAM_CLI_VERSION}", "-d", tmp
        )
        wheel = next(Path(tmp).glob("aws_sam_cli-*.whl"))
        staged = Path(tmp) / "staged"
        (staged / "events").mkdir(parents=True)
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                name = info.filename
                if name.startswith("samcli/local/rapid/aws-lambda-rie-"):
                    out = staged / Path(name).name
                    out.write_bytes(archive.read(info))
                    out.chmod(0o755)
                elif name.startswith(_EVENTS_IN_WHEEL) and not info.is_dir():
                    out = staged / "events" / name[len(_EVENTS_IN_WHEEL) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(archive.read(info))
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)


def fetch_sam() -> None:
    """Create a virtual environment holding aws-sam-cli, for ``sam validate --lint``."""
    home = sam_path().parent.parent
    done = home / ".complete"
    if done.is_file():
        return
    # A venv's scripts name their interpreter by absolute path, so it is built in place; the
    # marker is written last, and an unfinished venv is thrown away and built again.
    if home.exists():
        shutil.rmtree(home)
    venv.EnvBuilder(with_pip=True).create(home)
    _pip(home / "bin" / "python", "install", f"aws-sam-cli=={SAM_CLI_VERSION}")
    done.write_text(SAM_CLI_VERSION + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["rie", "sam", "all"], default="all")
    args = parser.parse_args(argv)
    with locked(TOOLS / ".lock"):
        if args.what in ("rie", "all"):
            fetch_rie()
        if args.what in ("sam", "all"):
            fetch_sam()
    print(json.dumps({"rie": str(rie_path()), "events": str(events_path()), "sam": str(sam_path())}))
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
