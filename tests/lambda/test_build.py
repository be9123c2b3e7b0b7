"""``omi build lambda``: the bundle's layout, its SAM template (checked by ``sam validate --lint``),
its Containerfile and requirements, and clear errors for bad options."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from omi_adapters.cli import main
from tests.conftest import ROOT

MODELS = "tests/lambda/lambda_models.py"


def build(tmp_path: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "bundle"
    return main(["build", "lambda", *args, "--out", str(out)]), out


def function_of(out: Path) -> dict[str, Any]:
    template = yaml.safe_load((out / "template.yaml").read_text())
    resource = template["Resources"]["ModelFunction"]
    assert resource["Type"] == "AWS::Serverless::Function"
    return resource["Properties"]  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_bundle_layout_and_template(tmp_path: Path) -> None:
    code, out = build(tmp_path, "examples/adder.py", "examples/text.py:text", "--memory", "2048", "--timeout", "60")
    assert code == 0
    function = out / "function"
    assert sorted(p.name for p in function.iterdir()) == [
        "adder.py",
        "omi_adapters",
        "omi_lambda",
        "requirements.txt",
        "text.py",
    ]
    assert (function / "omi_adapters" / "rest.py").exists()
    assert not list((function / "omi_adapters").glob("grpc_*.py"))  # grpc_health and grpc_access too
    properties = function_of(out)
    assert properties["Handler"] == "omi_lambda.handler" and properties["CodeUri"] == "function/"
    assert (properties["Runtime"], properties["MemorySize"], properties["Timeout"]) == ("python3.12", 2048, 60)
    assert properties["Environment"]["Variables"]["OMI_MODEL"] == "adder,text:text"
    assert properties["Events"]["HttpApi"] == {"Type": "HttpApi", "Properties": {"Path": "/{proxy+}", "Method": "ANY"}}
    assert properties["FunctionUrlConfig"] == {"AuthType": "AWS_IAM"}
    requirements = (function / "requirements.txt").read_text().split()
    assert {r.split(">")[0].split("=")[0] for r in requirements} == {
        "fastapi", "fastapi-offline", "mangum", "numpy", "orjson", "prometheus-client"
    }  # fmt: skip
    # --install-deps prefers the versions this environment serves and tests with, and theirs.
    from omi_lambda.build import installed_pins

    pins = dict(p.split("==") for p in installed_pins(requirements))
    assert pins["numpy"] == importlib.metadata.version("numpy") and "pydantic" in pins
    containerfile = (out / "Containerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.12\n" in containerfile
    assert 'ENV OMI_MODEL="adder,text:text"\n' in containerfile and containerfile.endswith(
        'CMD ["omi_lambda.handler"]\n'
    )
    readme = (out / "README.md").read_text()
    assert "--platform manylinux_2_34_x86_64" in readme and "--python-version 3.12" in readme


def test_module_targets_and_includes(tmp_path: Path) -> None:
    extra = tmp_path / "weights.bin"
    extra.write_bytes(b"\0" * 8)
    code, out = build(tmp_path, "examples.adder:adder", "--include", str(extra), "--requirement", "scikit-learn>=1.5")
    assert code == 0
    function = out / "function"
    assert (function / "examples" / "adder.py").is_file() and (function / "weights.bin").is_file()
    assert function_of(out)["Environment"]["Variables"]["OMI_MODEL"] == "examples.adder:adder"
    assert "scikit-learn>=1.5" in (function / "requirements.txt").read_text().splitlines()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--memory", "64"], "--memory must be 128 to 10240 MB, got 64"),
        (["--timeout", "901"], "--timeout must be 1 to 900 seconds, got 901"),
        (["--snapstart", "--python", "3.11"], "--snapstart needs python 3.12 or later, got 3.11"),
        (["--include", "no/such/file"], "no such file or folder no/such/file"),
        (["tests/serving/models.py:ECHOES"], "the bundle already has a 'models.py'"),
    ],
)
def test_bad_options_are_refused_clearly(tmp_path: Path, capsys: Any, args: list[str], message: str) -> None:
    (tmp_path / "models.py").write_text((ROOT / "examples" / "adder.py").read_text())
    code, _ = build(tmp_path, str(tmp_path / "models.py"), *args)
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_build_leaves_out_as_it_was(tmp_path: Path, capsys: Any, existed: bool) -> None:
    if existed:
        (tmp_path / "bundle").mkdir()
    (tmp_path / "models.py").write_text((ROOT / "examples" / "adder.py").read_text())
    # The second target clashes with the first only after the first was copied.
    code, out = build(tmp_path, str(tmp_path / "models.py"), "tests/serving/models.py:ECHOES")
    assert code == 2 and "the bundle already has a 'models.py'" in capsys.readouterr().err
    assert out.is_dir() == existed and (not existed or not any(out.iterdir()))
    code, out = build(tmp_path, "examples/adder.py")  # the rerun is not refused
    assert code == 0 and (out / "template.yaml").is_file()


def test_an_unwritable_out_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "file").write_text("x")
    code = main(["build", "lambda", "examples/adder.py", "--out", str(tmp_path / "file" / "bundle")])
    assert code == 2 and f"cannot write the bundle {tmp_path / 'file' / 'bundle'}" in capsys.readouterr().err


def test_out_must_be_new_or_empty(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "old").write_text("x")
    code, _ = build(tmp_path, "examples/adder.py")
    assert code == 2 and "exists and is not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("options", [[], ["--snapstart", "--function-url-auth", "NONE", "--arch", "arm64"]])
def test_sam_validate_lint_accepts_the_template(tmp_path: Path, sam_cli: Path, options: list[str]) -> None:
    code, out = build(tmp_path, "examples/adder.py", *options)
    assert code == 0
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    done = subprocess.run(
        [str(sam_cli), "validate", "--lint", "--template-file", str(out / "template.yaml")],
        cwd=out, env=env, check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


def test_sam_validate_lint_catches_a_broken_template(tmp_path: Path, sam_cli: Path) -> None:
    # The check can fail: a misspelt property and an impossible memory size are reported.
    code, out = build(tmp_path, "examples/adder.py")
    assert code == 0
    template = out / "template.yaml"
    text = template.read_text().replace("Handler:", "Handlr:").replace("MemorySize: 1024", "MemorySize: 99999")
    template.write_text(text)
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [str(sam_cli), "validate", "--lint", "--template-file", str(template)],
        cwd=out, env=env, check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode != 0 and "'Handlr' was unexpected" in report and "99999 is greater than" in report
