"""Fixtures of the Lambda tests: AWS's tools (fetched once into .tools/), sample events, handlers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

FETCH = ROOT / "scripts" / "fetch_lambda_tools.py"


def _fetch(what: str) -> dict[str, Path]:
    done = subprocess.run([sys.executable, str(FETCH), what], check=False, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"{FETCH.name} {what} failed:\n{done.stdout}\n{done.stderr}")
    return {key: Path(value) for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}


@pytest.fixture(scope="session")
def lambda_tools() -> dict[str, Path]:
    """The Runtime Interface Emulator (``rie``) and AWS's sample events (``events``)."""
    return _fetch("rie")


@pytest.fixture(scope="session")
def sam_cli() -> Path:
    """``sam`` from a virtual environment of its own."""
    return _fetch("sam")["sam"]


@pytest.fixture(scope="session")
def events_dir(lambda_tools: dict[str, Path]) -> Path:
    return lambda_tools["events"]


@pytest.fixture
def make_handler() -> Iterator[Callable[..., Any]]:
    """Build in-process handlers (each one an execution environment); closes them afterwards."""
    from omi_lambda import build_handler

    made: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        handler = build_handler(*args, **kwargs)
        made.append(handler)
        return handler

    yield make
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    for handler in made:
        handler.close()
        # Each handler registered its SnapStart hooks; the registries are the process's own.
        for registry in (get_before_snapshot(), get_after_restore()):
            registry[:] = [entry for entry in registry if getattr(entry[0], "__self__", None) is not handler]
