"""The ``omi`` command: ``inspect``, ``serve`` and ``build`` models.

Each build target lives in its own adapter distribution; the CLI finds it through an explicit
table (never by import side effects) and says which package to install when it is missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from omi_adapters import __version__
from omi_adapters.errors import OmiError
from omi_adapters.targets import load_targets

__all__ = ["BUILDERS", "main"]

#: ``omi build KIND`` -> (module, distribution to install). Each module defines
#: ``add_arguments(parser)`` and ``build(models, args) -> int``.
BUILDERS: dict[str, tuple[str, str]] = {
    "lambda": ("omi_lambda.build", "omi-adapters-lambda"),
    "knative": ("omi_knative.build", "omi-adapters-knative"),
    "triton": ("omi_triton.build", "omi-adapters-triton"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``omi`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="omi", description="Serve one predict function on every model-serving target."
    )
    parser.add_argument("--version", action="version", version=f"omi-adapters {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, print its whole traceback as well as its one-line reason"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    target_help = "path/to/file.py[:attr] or package.module[:attr]"

    inspect = commands.add_parser("inspect", help="print the contract of each model as JSON")
    inspect.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)

    predict = commands.add_parser(
        "predict",
        help="run one OIP inference request through the models and print the response",
        epilog="example: omi predict examples/adder.py --input "
        """'{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}'""",
    )
    predict.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)
    importlib.import_module("omi_adapters.predict").add_arguments(predict)

    serve = commands.add_parser("serve", help="serve models over OIP REST, OIP gRPC and OMI gRPC")
    serve.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)
    _serve_module().add_arguments(serve)

    build = commands.add_parser("build", help="write a deployable artifact")
    kinds = build.add_subparsers(dest="kind", required=True)
    builders: dict[str, ModuleType | None] = {}
    words = [a for a in argv if not a.startswith("-")]  # the command and its kind, past --debug
    for kind, (module_name, distribution) in BUILDERS.items():
        sub = kinds.add_parser(kind, help=f"build for {kind} (needs {distribution})")
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
        return 2


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
