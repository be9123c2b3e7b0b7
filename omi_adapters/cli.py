"""The ``omi`` command: ``inspect``, ``serve`` and ``build`` a model."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from omi_adapters.errors import OmiError
from omi_adapters.targets import load_targets

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``omi`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="omi", description="Serve one predict function on every model-serving target.")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="print the contract of each model as JSON")
    inspect.add_argument("targets", nargs="+", metavar="TARGET", help="path/to/file.py[:attr] or package.module[:attr]")

    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            models = load_targets(args.targets)
            print(json.dumps([m.contract() for m in models], indent=2))
            return 0
    except OmiError as exc:
        print(f"omi: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
