"""`import omi_adapters` stays light: the standard library and numpy, no framework."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "fastapi", "starlette", "pydantic", "grpc", "google.protobuf", "mangum", "uvicorn", "orjson", "sklearn",
    "prometheus_client",
]  # fmt: skip


def test_import_loads_no_framework() -> None:
    code = (
        "import sys, json, omi_adapters\nfrom omi_adapters import model, Tensor\nprint(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    assert "numpy" in loaded and "omi_adapters" in loaded
    assert not [name for name in HEAVY if name in loaded]


def test_cli_and_server_modules_import_no_framework() -> None:
    # `omi --help` and `omi inspect` must not pay for uvicorn and grpc: server.py imports them
    # only when it starts the front ends.
    code = (
        "import sys, json\n"
        "import omi_adapters.cli, omi_adapters.server, omi_adapters.dataplane\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    assert not [name for name in HEAVY if name in loaded and name != "orjson"]


def test_rest_front_end_imports_no_grpc() -> None:
    # A Lambda bundle carries the REST app but no gRPC.
    code = "import sys, omi_adapters.rest; print('grpc' in sys.modules, 'google.protobuf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "False"]
