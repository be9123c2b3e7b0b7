"""One version for the four distributions, set once (``__version__`` in omi_adapters/__init__.py):
each one's metadata, made from its source as a build makes it, has it, and each adapter requires
exactly that omi-adapters."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path

import pytest
from build.util import project_wheel_metadata
from packaging.requirements import Requirement

import omi_adapters
from tests.conftest import ROOT

PROJECTS = {
    "omi-adapters": ROOT,
    "omi-adapters-lambda": ROOT / "adapters" / "lambda",
    "omi-adapters-knative": ROOT / "adapters" / "knative",
    "omi-adapters-triton": ROOT / "adapters" / "triton",
}


@cache
def _metadata(project: Path) -> importlib_metadata.PackageMetadata:
    # The build backend's own answer, not an installed copy that may predate the source.
    return project_wheel_metadata(project, isolated=False)


def test_the_version_is_set_once() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?", omi_adapters.__version__)
    for project in PROJECTS.values():
        table = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        assert "version" not in table and "version" in table["dynamic"], f"{project}: a version of its own"


@pytest.mark.parametrize("name", PROJECTS)
def test_every_distribution_has_the_version(name: str) -> None:
    meta = _metadata(PROJECTS[name])
    assert meta["Name"] == name
    assert meta["Version"] == omi_adapters.__version__


@pytest.mark.parametrize("name", [n for n in PROJECTS if n != "omi-adapters"])
def test_adapters_require_omi_adapters_of_the_same_version(name: str) -> None:
    requirements = [Requirement(r) for r in _metadata(PROJECTS[name]).get_all("Requires-Dist") or []]
    (core,) = [r for r in requirements if r.name == "omi-adapters" and r.marker is None]
    assert str(core.specifier) == f"=={omi_adapters.__version__}"


@pytest.mark.parametrize("name", PROJECTS)
def test_the_installed_distributions_agree(name: str) -> None:
    assert importlib_metadata.version(name) == omi_adapters.__version__, (
        f"{name} was installed at another version: make .venv/.installed"
    )
