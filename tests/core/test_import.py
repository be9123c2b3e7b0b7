"""`import omi_adapters` stays light: the standard library and numpy, no framework."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["fastapi", "starlette", "pydantic", "grpc", "google.protobuf", "mangum", "uvicorn", "orjson", "sklearn"]


def test_import_loads_no_framework() -> None:
    code = (
        "import sys, json, omi_adapters\n"
        "from omi_adapters import model, Tensor\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    assert "numpy" in loaded and "omi_adapters" in loaded
    assert not [name for name in HEAVY if name in loaded]
