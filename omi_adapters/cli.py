"""The ``omi`` command: ``inspect``, ``serve`` and ``build`` models, ``check`` servers.

Each build target lives in its own adapter distribution; the CLI finds it through an explicit
table (never by import side effects) and says which package to install when it is missing.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import sys
import traceback
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, NoReturn

from omi_adapters import __version__
from omi_adapters.errors import ConfigurationError, InvalidInputError, ModelNotFoundError, OmiError
from omi_adapters.targets import load_targets

__all__ = ["BUILDERS", "main"]

#: ``omi build KIND`` -> (module, distribution to install). Each module defines
#: ``add_arguments(parser)`` and ``build(models, args) -> int``.
BUILDERS: dict[str, tuple[str, str]] = {
    "lambda": ("omi_lambda.build", "omi-adapters-lambda"),
    "knative": ("omi_knative.build", "omi-adapters-knative"),
    "triton": ("omi_triton.build", "omi-adapters-triton"),
}


#: Exit codes of every command: 0 done, 1 a failure while running (a model that does not load or
#: whose predict fails, a build step that fails), 2 a usage or configuration error (as argparse).
EXIT_FAILURE = 1
EXIT_USAGE = 2
_USAGE_ERRORS = (ConfigurationError, InvalidInputError, ModelNotFoundError)

#: Flags people type from other servers, and the one they mean here.
_ALIASES = {
    "--port": "--http-port",
    "--rest-port": "--http-port",
    "--grpc_port": "--grpc-port",
    "--threads": "--predict-threads",
    "--timeout": "--request-timeout",
    "--model-name": "--omi-model",
    "--bind": "--host",
    "--token": "--auth-token-file",
}

EXAMPLES = {
    "inspect": "example: omi inspect examples/adder.py examples/iris/model.py:Iris",
    "serve": "examples:\n  omi serve examples/adder.py\n  omi serve examples/adder.py examples/text.py "
    "--http-port 9000 --protocols rest,grpc\n  OMI_WORKERS=2 omi serve pkg.models:classifier\n\n"
    "Every flag can also be set as OMI_<FLAG> in the environment (--max-queue: OMI_MAX_QUEUE); "
    "the flag wins.",
    "build": "examples:\n  omi build knative examples/adder.py --out deploy --image registry.example/adder:1\n"
    "  omi build lambda examples/adder.py --out bundle --install-deps\n  omi build triton examples/adder.py --out repo",
    "lambda": "example: omi build lambda examples/adder.py --out bundle --install-deps",
    "knative": "example: omi build knative examples/adder.py --out deploy --image registry.example/adder:1",
    "triton": "example: omi build triton examples/adder.py examples/text.py --out repo",
}


class _Parser(argparse.ArgumentParser):
    """argparse, answering an unknown flag with the known one it looks like."""

    def error(self, message: str) -> NoReturn:
        hints = []
        known = sorted(_options(self))
        for word in re.findall(r"(--[\w-]+)", message) if "unrecognized arguments" in message else []:
            guess = _ALIASES.get(word) or next(iter(difflib.get_close_matches(word, known, n=1)), None)
            if guess:
                hints.append(f"{word}: did you mean {guess}?")
        super().error("; ".join([message, *hints]))


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--flag`` of ``parser`` and of its subcommands."""
    found = {o for o in parser._option_string_actions if o.startswith("--")}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``omi`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog="omi", description="Serve one predict function on every model-serving target.")
    parser.add_argument("--version", action="version", version=f"omi-adapters {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, print its whole traceback as well as its one-line reason"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    target_help = "path/to/file.py[:attr] or package.module[:attr]"

    raw = argparse.RawDescriptionHelpFormatter
    inspect = commands.add_parser(
        "inspect", help="print the contract of each model as JSON", epilog=EXAMPLES["inspect"], formatter_class=raw
    )
    inspect.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)

    predict = commands.add_parser(
        "predict",
        help="run one OIP inference request through the models and print the response",
        epilog="example: omi predict examples/adder.py --input "
        """'{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}'""",
    )
    predict.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)
    importlib.import_module("omi_adapters.predict").add_arguments(predict)

    check = commands.add_parser(
        "check",
        help="check that an OIP (REST, gRPC) or OMI server, ours or another, follows the protocols",
        epilog=_check_module().EPILOG,
        formatter_class=raw,
    )
    _check_module().add_arguments(check)

    serve = commands.add_parser(
        "serve", help="serve models over OIP REST, OIP gRPC and OMI gRPC", epilog=EXAMPLES["serve"], formatter_class=raw
    )
    serve.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)
    _serve_module().add_arguments(serve)
    _defaults_from_env(serve)

    build = commands.add_parser(
        "build", help="write a deployable artifact", epilog=EXAMPLES["build"], formatter_class=raw
    )
    kinds = build.add_subparsers(dest="kind", required=True)
    builders: dict[str, ModuleType | None] = {}
    words = [a for a in argv if not a.startswith("-")]  # the command and its kind, past --debug
    for kind, (module_name, distribution) in BUILDERS.items():
        sub = kinds.add_parser(
            kind, help=f"build for {kind} (needs {distribution})", epilog=EXAMPLES[kind], formatter_class=raw
        )
        sub.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)
        # Only the chosen builder is imported: a Lambda build must not import Triton's tooling.
        chosen = len(words) > 1 and words[0] == "build" and words[1] == kind
        module = _optional(module_name) if chosen else None
        builders[kind] = module
        if module is not None:
            module.add_arguments(sub)
        elif chosen:
            parser.error(f"'omi build {kind}' needs the {distribution} package: pip install {distribution}")

    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return int(_check_module().run(args))
        if args.command == "serve":
            # With --workers the supervisor runs the workers before (and without) loading a model.
            code = _serve_module().supervise(argv, args)
            if code is not None:
                return int(code)
        models = load_targets(args.targets)
        if args.command == "inspect":
            print(json.dumps([m.contract() for m in models], indent=2))
            return 0
        if args.command == "serve":
            return int(_serve_module().run(models, args))
        if args.command == "predict":
            return int(importlib.import_module("omi_adapters.predict").run(models, args))
        module = builders[args.kind]
        assert module is not None
        return int(module.build(models, args))
    except OmiError as exc:
        if args.debug:
            traceback.print_exception(exc.__cause__ or exc, file=sys.stderr)
        print(f"omi: {exc}", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback with --debug
        if args.debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"omi: internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def exit_code(exc: OmiError) -> int:
    """2 for a usage or configuration error (what the user typed or wrote must change), 1 for a failure at run time."""
    return EXIT_USAGE if isinstance(exc, _USAGE_ERRORS) else EXIT_FAILURE


def _defaults_from_env(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Each ``--flag`` of ``parser`` takes its default from ``$OMI_FLAG`` when that is set (the flag wins)."""
    environ = os.environ if environ is None else environ
    for action in parser._actions:
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long is None or action.dest in ("help", "version"):
            continue
        name = "OMI_" + long[2:].upper().replace("-", "_")
        text = environ.get(name)
        if text is None:
            continue
        try:
            if isinstance(action, argparse._StoreTrueAction):
                value: Any = text.strip().lower() in ("1", "true", "yes", "on")
            else:
                value = action.type(text) if callable(action.type) else text
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            parser.error(f"${name}: {exc} (for {long})")
        if action.choices is not None and value not in action.choices:
            parser.error(f"${name}: {text!r} is not one of {', '.join(map(str, action.choices))} (for {long})")
        action.default = value


def _check_module() -> ModuleType:
    return importlib.import_module("omi_adapters.conformance.command")


def _serve_module() -> ModuleType:
    return importlib.import_module("omi_adapters.server")


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name.split(".")[0]):
            return None
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
