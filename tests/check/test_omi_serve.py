"""`omi check` against a real `omi serve` (REST, gRPC and OMI): every row passes, or is a SKIP with its reason."""

from __future__ import annotations

from pathlib import Path

from tests.check.conftest import DATATYPES, omi_check
from tests.conftest import EXAMPLES
from tests.servers import Served, serve

ECHOES = tuple(f"echo_{d.lower()}" for d in DATATYPES)
MODELS = ("adder", "text", "iris", *ECHOES)


def test_every_protocol_passes(served: Served) -> None:
    models = [arg for name in MODELS for arg in ("--model", name)]
    result = omi_check(served.http_url, *models, "--grpc", served.grpc_url, "--omi", served.omi_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = result.outcomes()
    skipped = {k for k, v in outcomes.items() if v == "SKIP"}
    # OMI's Shutdown would stop the server; FP16 and BF16 have no JSON form nor typed gRPC
    # contents (their binary and raw rows pass).
    no_json = {
        *[("rest", f"{check} [echo_{d}]") for d in ("fp16", "bf16") for check in ("infer JSON", "request id")],
        *[("grpc", f"infer typed contents [echo_{d}]") for d in ("fp16", "bf16")],
    }
    assert skipped == {("omi", "shutdown"), *no_json}, result.stdout
    for check in ("statistics", "repository index", "model config [adder]"):  # the extensions it lists
        assert outcomes["rest", check] == "PASS"
    assert set(outcomes.values()) == {"PASS", "SKIP"}
    for model in ("echo_fp16", "echo_bf16"):
        assert (
            outcomes["rest", f"binary input [{model}]"] == outcomes["grpc", f"infer raw contents [{model}]"] == "PASS"
        )
    for model in ("adder", "text", "iris"):
        for check in ("model metadata", "infer JSON", "request id", "versioned paths", "binary output",
                      "binary input", "wrong datatype", "wrong shape"):  # fmt: skip
            assert outcomes["rest", f"{check} [{model}]"] == "PASS"
        for check in ("model metadata", "model ready", "infer typed contents", "infer raw contents", "versioned",
                      "wrong datatype", "wrong shape"):  # fmt: skip
            assert outcomes["grpc", f"{check} [{model}]"] == "PASS"
    assert "404" in result.row("rest", "unknown model")["detail"]
    assert result.row("grpc", "unknown model")["detail"] == "ModelMetadata NOT_FOUND, ModelInfer NOT_FOUND"
    # OMI's Status says only file names and media types: the Run item was made from adder's OIP metadata.
    assert outcomes["omi", "status"] == outcomes["omi", "run"] == outcomes["omi", "run bad item"] == "PASS"
    assert "Y (" in result.row("omi", "run")["detail"]


def test_the_table_says_all_passed(served: Served) -> None:
    result = omi_check(served.http_url, "--model", "adder")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"omi check: rest {served.http_url}"
    assert any(line.split()[:5] == ["rest", "infer", "JSON", "[adder]", "PASS"] for line in lines)
    assert lines[-1].endswith("skipped: all checks passed")


def test_without_model_names_the_models_come_from_the_repository_index(served: Served) -> None:
    # The OIP has no list endpoint; omi serve lists Triton's model_repository extension.
    result = omi_check(served.http_url, "--grpc", served.grpc_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.row("rest", "repository index")["outcome"] == "PASS"
    for protocol in ("rest", "grpc"):
        assert (
            result.row(protocol, "infer JSON [adder]" if protocol == "rest" else "infer raw contents [adder]")[
                "outcome"
            ]
            == "PASS"
        )


def test_omi_alone_cannot_guess_a_json_input_and_says_so(served: Served) -> None:
    result = omi_check("--omi", served.omi_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    run = result.row("omi", "run")
    assert run["outcome"] == "SKIP" and "REST URL" in run["detail"]
    assert result.row("omi", "run bad item")["outcome"] == "PASS"


def test_a_token_protected_server_passes_with_its_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    with serve(EXAMPLES / "adder.py", protocols=("rest", "grpc", "omi"), args=("--auth-token-file", str(token))) as srv:
        srv.wait_ready()
        addresses = (srv.http_url, "--model", "adder", "--grpc", srv.grpc_url, "--omi", srv.omi_url, "--json")
        result = omi_check(*addresses, "--auth-token-file", str(token))
        assert result.returncode == 0, result.stdout + result.stderr
        without = omi_check(*addresses)
    assert without.returncode == 1
    # Health and readiness stay open to probes; metadata, inference and OMI need the token.
    assert without.row("rest", "server live")["outcome"] == without.row("grpc", "server ready")["outcome"] == "PASS"
    assert "HTTP 401" in without.row("rest", "model metadata [adder]")["detail"]
    assert "UNAUTHENTICATED" in without.row("grpc", "model metadata [adder]")["detail"]
    assert "UNAUTHENTICATED" in without.row("omi", "status")["detail"]


def test_omi_alone_sends_text_to_an_input_that_takes_it() -> None:
    # text's input accepts text/plain: a Run item needs no OIP metadata.
    with serve(EXAMPLES / "text.py", protocols=("omi",)) as srv:
        result = omi_check("--omi", srv.omi_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    run = result.row("omi", "run")
    assert run["outcome"] == "PASS" and "TEXT (9 bytes)" in run["detail"] and "UPPER (" in run["detail"]
