"""`omi check` against servers that break the protocol, hang or are not there: exit 1, the failing rows named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.check import broken_oip
from tests.check.conftest import omi_check
from tests.conftest import ROOT
from tests.servers import free_port


@pytest.fixture(scope="module")
def broken() -> Iterator[str]:
    with broken_oip.serve() as address:
        yield address


def test_broken_server_fails_the_rows_it_breaks(broken: str) -> None:
    result = omi_check(broken, "--model", "m", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    outcomes = result.outcomes()
    assert result.failed() == {
        ("rest", "infer JSON [m]"),
        ("rest", "request id [m]"),
        ("rest", "versioned paths [m]"),
        ("rest", "wrong datatype [m]"),
        ("rest", "unknown model"),
        ("rest", "malformed JSON"),
    }
    for check in ("server live", "server ready", "server metadata", "model metadata [m]", "model ready [m]",
                  "wrong shape [m]"):  # fmt: skip
        assert outcomes["rest", check] == "PASS"
    assert outcomes["rest", "binary output [m]"] == "SKIP"  # it does not list binary_tensor_data
    assert "datatype 'FP64', metadata says FP32" in result.row("rest", "infer JSON [m]")["detail"]
    assert "the reply has id None" in result.row("rest", "request id [m]")["detail"]
    assert "expected 400" in result.row("rest", "wrong datatype [m]")["detail"]
    assert "HTTP 500 'Internal Server Error'" in result.row("rest", "unknown model")["detail"]
    assert """not {"error": string}: '{"message": "bad JSON"}'""" in result.row("rest", "malformed JSON")["detail"]


def test_no_request_is_made_up_beyond_max_body(broken: str) -> None:
    result = omi_check(broken, "--model", "huge", "--json")
    row = result.row("rest", "inference [huge]")
    assert row["outcome"] == "SKIP" and "over --max-body 67108864" in row["detail"]
    assert result.row("rest", "model metadata [huge]")["outcome"] == "PASS"


def test_the_table_names_the_failing_checks(broken: str) -> None:
    result = omi_check(broken, "--model", "m")
    assert result.returncode == 1
    failing = [line.split("  ")[0:2] for line in result.stdout.splitlines() if "  FAIL  " in line]
    assert len(failing) == 6
    assert "unknown model" in result.stdout and result.stdout.rstrip().endswith("6 check(s) failed")


def test_a_known_failure_does_not_fail_the_run(broken: str) -> None:
    known = ["infer JSON", "request id", "versioned paths", "wrong datatype", "unknown model", "malformed JSON"]
    result = omi_check(broken, "--model", "m", "--json", *[a for k in known for a in ("--known-failure", k)])
    assert result.returncode == 0, result.stdout
    assert result.row("rest", "unknown model")["outcome"] == "KNOWN"


def test_a_server_that_never_answers_is_a_fail_row_not_a_hang() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # connections are accepted by the kernel and never answered
        port = listener.getsockname()[1]
        start = time.monotonic()
        result = omi_check(f"127.0.0.1:{port}", "--model", "m", "--grpc", f"127.0.0.1:{port}", "--omi",
                           f"127.0.0.1:{port}", "--timeout", "1", "--json")  # fmt: skip
        elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stdout + result.stderr
    assert "within 1 s (--timeout)" in result.row("rest", "server live")["detail"]
    assert result.row("rest", "remaining checks")["outcome"] == "SKIP"
    assert result.row("grpc", "server live")["outcome"] == "FAIL"
    assert result.row("omi", "status")["outcome"] == "FAIL"
    assert elapsed < 30


def test_nothing_listening_is_a_clear_fail() -> None:
    result = omi_check(f"127.0.0.1:{free_port()}", "--json")
    assert result.returncode == 1
    assert "connection refused" in result.row("rest", "server live")["detail"]


@pytest.fixture(scope="module")
def broken_grpc() -> Iterator[str]:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "tests.check.broken_grpc", str(port)],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(30)


def test_broken_grpc_and_omi_fail_the_rows_they_break(broken_grpc: str) -> None:
    result = omi_check("--grpc", broken_grpc, "--omi", broken_grpc, "--model", "m", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.failed() == {
        ("grpc", "infer typed contents [m]"),
        ("grpc", "infer raw contents [m]"),
        ("grpc", "versioned [m]"),
        ("grpc", "wrong datatype [m]"),
        ("grpc", "wrong shape [m]"),
        ("grpc", "unknown model ready"),
        ("grpc", "unknown model"),
        ("omi", "status"),
        ("omi", "run bad item"),
    }
    typed = result.row("grpc", "infer typed contents [m]")["detail"]
    assert "datatype 'INT32', metadata says FP32" in typed and "the reply has id ''" in typed
    assert "expected INVALID_ARGUMENT, got INTERNAL" in result.row("grpc", "wrong datatype [m]")["detail"]
    assert "expected INVALID_ARGUMENT, got OK" in result.row("grpc", "wrong shape [m]")["detail"]
    assert result.row("grpc", "unknown model ready")["detail"].endswith("ready=True")
    assert "got UNKNOWN" in result.row("grpc", "unknown model")["detail"]
    assert "500/'Internal Server Error'" in result.row("omi", "status")["detail"]
    # Status still names the files, so a Run item is made (raw text for a text/plain input).
    assert result.row("omi", "run")["outcome"] == "PASS"
    assert "without an 'error' file" in result.row("omi", "run bad item")["detail"]
    assert result.row("omi", "shutdown")["outcome"] == "SKIP"


def test_wait_polls_until_the_server_answers() -> None:
    port = free_port()
    args = [sys.executable, "-m", "omi_adapters.cli", "check", f"127.0.0.1:{port}", "--model", "m", "--wait", "60"]
    with subprocess.Popen(args, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, text=True) as proc:
        time.sleep(1.5)  # nothing listens yet: without --wait the first row would fail at once
        assert proc.poll() is None
        with broken_oip.serve(port):
            out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1  # the broken server's own failures
    assert [line.split()[:4] for line in out.splitlines() if "server live" in line] == [
        ["rest", "server", "live", "PASS"]
    ]
