"""``omi check URL [--grpc ADDR] [--omi ADDR]``: the command line of the conformance checker.

Only the standard library is imported with this module (the ``omi`` command builds every
subcommand's parser); the checks are imported when they run.

Exit 0 when every check passed (or was skipped for a feature the server does not claim), 1
when one failed, 2 for a usage error (a malformed URL or address, nothing to check, a missing
extra).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omi_adapters.conformance.models import ModelMeta

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_TIMEOUT", "EPILOG", "add_arguments", "run"]

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BODY = 64 * 1024 * 1024

EPILOG = """\
examples:
  omi check localhost:8080 --model adder --grpc localhost:8081 --omi localhost:45000
  omi check http://localhost:8000            # Triton: its repository index names the models
  omi check --grpc localhost:8001 --model simple --json

Each row is a protocol, a check, PASS/FAIL/SKIP and what was expected and came back. A SKIP is a
check the server does not claim to support (an extension it does not list): not a failure.
A failure named with --known-failure is shown as KNOWN and does not fail the run (Triton 2.51
answers a malformed JSON body with 500, not 400: --known-failure 'malformed JSON').
OMI's Shutdown is never called, so the server being checked keeps running.
Exit 0 when no check failed, 1 when one did, 2 for a usage error."""

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``omi check``."""
    parser.add_argument(
        "url", nargs="?", default=None, metavar="URL",
        help="the OIP REST server: http[s]://host[:port][/prefix], or host:port for http",
    )  # fmt: skip
    parser.add_argument("--grpc", metavar="HOST:PORT", default=None, help="an OIP gRPC server to check (plaintext)")
    parser.add_argument(
        "--omi", metavar="HOST:PORT", default=None,
        help="an OMI (ModzyModel) gRPC server to check (plaintext); its Shutdown is never called",
    )  # fmt: skip
    parser.add_argument(
        "--model", action="append", default=[], metavar="NAME",
        help="a model to check (repeatable); without it, the REST server's repository index names them when it "
        "lists the model_repository extension",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_positive, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"the longest any one call may take; a call without an answer by then fails (default: {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="first wait up to this long for the server to say it is ready (REST /v2/health/ready, else gRPC "
        "ServerReady), for a server just started (default: 0, check at once)",
    )  # fmt: skip
    parser.add_argument(
        "--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
        help=f"the largest REST answer or gRPC message accepted (default: {DEFAULT_MAX_BODY} = 64 MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--auth-token-file", default=None, metavar="PATH",
        help="send the bearer token in this file ($OMI_AUTH_TOKEN sets it too), as omi serve --auth-token-file wants",
    )  # fmt: skip
    parser.add_argument(
        "--known-failure", action="append", default=[], metavar="CHECK",
        help="a check whose failure is known and accepted (repeatable), as its row names it: 'malformed JSON', "
        "or 'wrong shape [adder]' for one model; its row says KNOWN and does not fail the run",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _usage(message: str) -> int:
    print(f"omi check: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the checks the arguments ask for and print the report; returns the exit code."""
    # Imported here, not at the top: every ``omi`` command builds this parser, ``omi serve`` included.
    from omi_adapters.access import load_token
    from omi_adapters.conformance.report import Report
    from omi_adapters.conformance.rest_checks import run_rest
    from omi_adapters.conformance.rest_client import RestClient, parse_url

    if args.url is None and args.grpc is None and args.omi is None:
        return _usage("nothing to check: give the REST URL, --grpc HOST:PORT or --omi HOST:PORT")
    if args.url is not None:
        try:
            parse_url(args.url)
        except ValueError as exc:
            return _usage(f"URL {exc}")
    for flag, address in (("--grpc", args.grpc), ("--omi", args.omi)):
        if address is not None and not _valid_address(address):
            return _usage(f"{flag} {address!r} is not HOST:PORT (a gRPC address has no scheme)")
    if args.wait < 0:
        return _usage(f"--wait {args.wait:g} is negative")
    if args.max_body < 1:
        return _usage(f"--max-body {args.max_body} is not a positive number of bytes")
    if (args.grpc or args.omi) and not _have_grpc():
        return _usage("--grpc and --omi need the grpc extra: pip install 'omi-adapters[grpc]'")
    token = load_token(args.auth_token_file, os.environ)
    headers = {"Authorization": f"Bearer {token.decode()}"} if token else {}
    grpc_metadata = [("authorization", f"Bearer {token.decode()}")] if token else []

    report = Report(known=frozenset(args.known_failure))
    names = list(args.model)
    known: dict[str, ModelMeta] = {}
    deadline = time.monotonic() + args.wait
    if args.url is not None:
        client = RestClient(args.url, timeout=args.timeout, max_body=args.max_body, headers=headers)
        if args.wait:
            _wait(lambda: client.get("/v2/health/ready").status == 200, deadline)
        found = run_rest(client, report, names)
        names = names or found.names
        known.update(found.metadata)
    if args.grpc is not None:
        grpc_checks = importlib.import_module("omi_adapters.conformance.grpc_checks")
        if args.wait and args.url is None:
            _wait(lambda: grpc_checks.server_ready(args.grpc, timeout=args.timeout, metadata=grpc_metadata), deadline)
        found_grpc: dict[str, ModelMeta] = grpc_checks.run_grpc(
            args.grpc, report, names, timeout=args.timeout, max_message=args.max_body, metadata=grpc_metadata
        )
        known = {**found_grpc, **known}
    if args.omi is not None:
        omi_checks = importlib.import_module("omi_adapters.conformance.omi_checks")
        omi_checks.run_omi(
            args.omi, report, known, timeout=args.timeout, max_message=args.max_body, metadata=grpc_metadata
        )
    print(report.to_json() if args.json else _title(args) + "\n" + report.table())
    return 0 if report.passed else 1


def _wait(ready: Callable[[], bool], deadline: float) -> None:
    """Poll ``ready`` until it says so or the deadline passes; the checks then report what they find."""
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001, S110 - not up yet (refused, reset, an error status): poll again
            pass
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def _title(args: Any) -> str:
    parts = [f"rest {args.url}" if args.url else "", f"grpc {args.grpc}" if args.grpc else ""]
    parts.append(f"omi {args.omi}" if args.omi else "")
    return "omi check: " + ", ".join(p for p in parts if p) + "\n"


def _valid_address(address: str) -> bool:
    match = _ADDRESS.match(address)
    return match is not None and int(match.group(2)) <= 65535


def _have_grpc() -> bool:
    try:
        importlib.import_module("grpc")
        importlib.import_module("google.protobuf")
    except ModuleNotFoundError:
        return False
    return True
