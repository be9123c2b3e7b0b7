"""``omi predict``: one OIP inference request through the same DataPlane as ``omi serve``, no server.

For the development loop: the request is what a client would POST to ``/v2/models/{m}/infer``
(JSON), the answer is what ``omi serve`` would send back, printed as JSON. A BYTES output that
is not UTF-8 text, which ``omi serve`` sends only as binary data, is printed as base64, tagged
``"content_type": "base64"``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from omi_adapters.codecs import oip_json
from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import InvalidInputError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``omi predict``."""
    parser.add_argument(
        "--input",
        required=True,
        metavar="JSON|@FILE",
        help="the OIP inference request: JSON text, @path/to/request.json, or @- for standard input",
    )
    parser.add_argument(
        "--model", default=None, help="the model to ask (default: the request's model_name, else the only model)"
    )
    parser.add_argument("--model-version", default=None, help="its version (default: the newest)")


def run(models: Sequence[Model], args: argparse.Namespace) -> int:
    """Print the OIP response. A request or usage error, or a model that fails, raises (``omi`` says which exit code)."""
    document = _read(args.input)
    obj = oip_json.loads(document, "the request")
    name = args.model or (obj.get("model_name") if isinstance(obj, dict) else None)
    if name is None:
        names = list(dict.fromkeys(m.name for m in models))
        if len(names) > 1:
            raise InvalidInputError(f"several models are given ({', '.join(names)}): choose one with --model")
        name = names[0]
    request = oip_json.request_from_dict(obj)
    dataplane = DataPlane(models)
    try:
        dataplane.start()
        response = asyncio.run(dataplane.infer(name, args.model_version, request))
    finally:
        dataplane.close()
    sys.stdout.write(oip_json.encode_response(response, base64_bytes=True).decode() + "\n")
    return 0


def _read(source: str) -> bytes:
    if source == "@-":
        return sys.stdin.buffer.read()
    if source.startswith("@"):
        path = Path(source[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"--input {source}: {exc.strerror}") from None
    return source.encode()
