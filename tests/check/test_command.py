"""`omi check` as a command: usage errors exit 2 with a message, a missing extra is named, and
building its parser (which every `omi` command does) imports no HTTP or gRPC client."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.check.conftest import omi_check
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://example.com"], "the scheme must be http or https"),
        (["http://localhost:99999"], "the port is not a number"),
        (["http://"], "no host"),
        (["--grpc", "http://localhost:8001"], "is not HOST:PORT"),
        (["--omi", "localhost"], "is not HOST:PORT"),
        ([], "nothing to check"),
        (["localhost:1", "--timeout", "0"], "not a positive number"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = omi_check(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_grpc_and_omi_name_the_extra_they_need() -> None:
    script = (
        "import sys; sys.modules['grpc'] = None\n"  # as if grpcio were not installed
        "from omi_adapters.cli import main\n"
        "sys.exit(main(['check', '--omi', '127.0.0.1:1']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert "pip install 'omi-adapters[grpc]'" in result.stderr


def test_the_parser_module_imports_no_client() -> None:
    script = (
        "import sys, omi_adapters.conformance.command\n"
        "print(sorted(m for m in ('http.client', 'grpc', 'omi_adapters.conformance.rest_checks') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_help_says_shutdown_is_never_called() -> None:
    result = omi_check("--help")
    assert result.returncode == 0
    assert "Shutdown is never called" in result.stdout and "--known-failure" in result.stdout
