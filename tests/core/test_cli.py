"""`omi inspect` prints each example's contract; bad targets get a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT


def omi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omi_adapters.cli", *args],
        check=False, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})},
    )  # fmt: skip


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
    assert "has no 'nope' (its models: adder)" in omi("inspect", "examples/adder.py:nope").stderr
    assert "no module named 'no.such'" in omi("inspect", "no.such:x").stderr
    assert "defines no @model" in omi("inspect", "tests/conftest.py").stderr


HEAD = "import numpy as np\nfrom omi_adapters import Tensor, model\n"
IO = 'inputs=[Tensor("X", "FP32", [1])], outputs=[Tensor("Y", "FP32", [1])]'


@pytest.mark.parametrize(
    ("name", "source", "target", "message"),
    [
        ("syntax.py", "def f(:\n    pass\n", "", "{file}:1: SyntaxError: invalid syntax"),
        ("missing.py", "import sklearn.svm_nope_x\n", "", None),
        ("nowhere.py", "import cv2_is_not_here\n", "",
         "{file} imports 'cv2_is_not_here', which is not installed: pip install cv2_is_not_here"),
        ("raises.py", HEAD + "x = 1\nraise RuntimeError('no weights here')\n", "",
         "{file}:4: RuntimeError: no weights here"),
        ("bare.py", HEAD + "@model\ndef f(X):\n    return X\n", "",
         "{file}:3: @model on f needs its tensors: write @model(inputs=[Tensor(...)], outputs=[Tensor(...)])"),
        ("method.py", HEAD + f"@model({IO})\nclass Echo:\n    def predict(self, X):\n        return X\n",
         ":Echo.predict", "{file}:Echo.predict: a target names a model, and 'Echo' is one: use {file}:Echo"),
        ("plain.py", HEAD + f"@model({IO})\ndef m(X):\n    return X\ndef helper(X):\n    return X\n",
         ":helper", "{file}:helper: 'helper' is a function not decorated with @model(...)"),
        ("exits.py", HEAD + "import sys\nsys.exit('bye')\n", "", "{file}:4: SystemExit: bye"),
    ],
)  # fmt: skip
def test_broken_model_files_get_one_line_and_exit_2(
    tmp_path: Path, name: str, source: str, target: str, message: str | None
) -> None:
    path = tmp_path / name
    path.write_text(source)
    result = omi("inspect", f"{path}{target}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    if message is None:  # sklearn is installed here: the missing part is its submodule
        assert lines[0].startswith(f"omi: {path} imports 'sklearn.svm_nope_x', which is not installed")
    else:
        assert lines[0] == "omi: " + message.format(file=path)
    debug = omi("--debug", "inspect", f"{path}{target}")
    assert debug.returncode == 2 and debug.stderr.strip().splitlines()[-1] == lines[0]


def test_well_known_import_names_get_their_distribution_in_the_hint(tmp_path: Path) -> None:
    from omi_adapters.targets import _import_failed

    error = _import_failed("m.py", None, ModuleNotFoundError("No module named 'sklearn'", name="sklearn"))
    assert str(error) == "m.py imports 'sklearn', which is not installed: pip install scikit-learn"


def test_a_model_file_named_like_a_standard_module_serves(tmp_path: Path) -> None:
    path = tmp_path / "random.py"
    path.write_text(
        HEAD
        + textwrap.dedent(f"""
        import random as _random  # the standard module, not this file


        @model({IO})
        def r(X):
            return X + _random.random() * 0
    """)
    )
    result = omi("inspect", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == "r"


def test_version() -> None:
    from omi_adapters import __version__

    result = omi("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"omi-adapters {__version__}"


@pytest.mark.parametrize("command", [["inspect"], ["predict"], ["serve"], ["build"], ["build", "triton"]])
def test_every_command_shows_an_example(command: list[str]) -> None:
    result = omi(*command, "--help")
    assert result.returncode == 0 and "example" in result.stdout, result.stdout


def test_a_flag_from_another_server_gets_the_one_meant() -> None:
    result = omi("serve", "examples/adder.py", "--port", "9000")
    assert result.returncode == 2
    assert "--port: did you mean --http-port?" in result.stderr
    assert "--max-qeue: did you mean --max-queue?" in omi("serve", "examples/adder.py", "--max-qeue", "3").stderr


def test_serve_flags_take_defaults_from_omi_variables_and_the_flag_wins() -> None:
    import argparse

    from omi_adapters.cli import _defaults_from_env
    from omi_adapters.server import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    _defaults_from_env(parser, {"OMI_MAX_QUEUE": "7", "OMI_HTTP_PORT": "9100", "OMI_ACCESS_LOG": "true"})
    options = options_from_args(parser.parse_args([]))
    assert (options.limits.max_queue, options.http_port) == (7, 9100)
    assert options_from_args(parser.parse_args(["--max-queue", "3"])).limits.max_queue == 3
    bad = omi("serve", "examples/adder.py", env={"OMI_MAX_QUEUE": "lots"})
    assert bad.returncode == 2 and "$OMI_MAX_QUEUE: invalid literal" in bad.stderr


ONE_INT = '{"inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [1]}]}'
ONE_FLOAT = '{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}'
MODELS = "tests/serving/models.py"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["inspect", "examples/adder.py"], 0, ""),
        (["predict", "examples/adder.py", "--input", ONE_FLOAT], 0, ""),
        ([], 2, "the following arguments are required"),
        (["serve", "--no-such-flag", "examples/adder.py"], 2, "unrecognized arguments"),
        (["serve", "examples/nosuch.py"], 2, "no such file examples/nosuch.py"),
        (["serve", "examples/adder.py", "--workers", "0"], 2, "--workers must be at least 1"),
        (
            ["serve", "examples/adder.py", "--workers", "2", "--model-control-mode", "explicit"],
            2,
            "--model-control-mode explicit needs --workers 1",
        ),
        (["predict", "examples/adder.py", "--input", "{bad"], 2, "not valid JSON"),
        (["predict", "examples/adder.py", "--model", "nobody", "--input", ONE_FLOAT], 2, "unknown model 'nobody'"),
        (["predict", f"{MODELS}:failing", "--input", ONE_INT], 1, "the model cannot take negative numbers"),
        (["predict", f"{MODELS}:Broken", "--input", ONE_INT], 1, "weights.bin is missing"),
    ],
)
def test_exit_codes_are_0_done_1_a_failure_at_run_time_2_usage_or_configuration(
    args: list[str], code: int, says: str
) -> None:
    result = omi(*args)
    assert result.returncode == code, result.stderr
    assert says in result.stderr, result.stderr
    if code == 2:  # a mistake in what was typed or written: one line, no traceback
        assert "Traceback" not in result.stderr, result.stderr
    elif code == 1:  # the model's own failure: its last line says why (the log above has the model's traceback)
        assert result.stderr.strip().splitlines()[-1].startswith("omi: "), result.stderr
