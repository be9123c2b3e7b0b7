"""The pre-commit hooks are local, run the venv's pinned tools, and check what ``make lint`` does."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from tests.conftest import ROOT


def _hooks() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    return {hook["id"]: hook for hook in config["repos"][0]["hooks"]}


def _make_variable(name: str) -> list[str]:
    found = re.search(rf"^{name} := (.*)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert found, name
    return found.group(1).split()


def test_every_hook_is_local_and_runs_a_tool_of_the_venv() -> None:
    for hook_id, hook in _hooks().items():
        assert hook["language"] in ("system", "unsupported"), hook_id
        entry = shlex.split(hook["entry"])
        assert entry[0].startswith(".venv/bin/") or entry[:2] == ["bash", "-c"], hook_id
        assert ".venv/bin/" in hook["entry"], hook_id


def test_the_hooks_check_what_make_lint_checks() -> None:
    hooks = _hooks()
    lint = (ROOT / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/ruff check ." in lint and "ruff check" in hooks["ruff-check"]["entry"]
    assert "$(BIN)/ruff format --check ." in lint and "ruff format --check" in hooks["ruff-format"]["entry"]
    assert "$(BIN)/mypy $(TYPED)" in lint
    assert shlex.split(hooks["mypy"]["entry"]) == [".venv/bin/mypy", *_make_variable("TYPED")]
    assert "tests/serving/test_protos.py::test_generated_code_matches_protos" in hooks["protos"]["entry"]
    assert "actionlint" in lint and "actionlint" in hooks["actionlint"]["entry"]
