"""`omi inspect` prints each example's contract; bad targets get a clear message."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import EXAMPLES, ROOT


def omi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omi_adapters.cli", *args], check=False, capture_output=True, text=True, cwd=ROOT
    )


def test_inspect_examples() -> None:
    result = omi("inspect", str(EXAMPLES / "adder.py"), "examples/iris/model.py:Iris", "examples/text.py:text")
    assert result.returncode == 0, result.stderr
    contracts = {c["name"]: c for c in json.loads(result.stdout)}
    assert contracts["adder"]["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, -1]}]
    iris = contracts["iris"]
    assert iris["load"] == "lazy" and iris["max_batch_size"] == 64
    assert [o["name"] for o in iris["outputs"]] == ["probabilities", "label"]
    assert iris["omi"]["resources"]["required_ram"] == "256M"
    assert contracts["text"]["outputs"][0]["datatype"] == "BYTES"


def test_inspect_by_module_path() -> None:
    result = omi("inspect", "examples.adder:adder")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == "adder"


def test_inspect_does_not_load_the_model() -> None:
    code = "import sys; from omi_adapters.cli import main; main(['inspect', 'examples/iris/model.py']); assert 'sklearn' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_bad_targets() -> None:
    assert "no such file" in omi("inspect", "nowhere.py").stderr
    assert "has no attribute 'nope'" in omi("inspect", "examples/adder.py:nope").stderr
    assert "no module named 'no.such'" in omi("inspect", "no.such:x").stderr
    assert "defines no @model" in omi("inspect", "tests/conftest.py").stderr
