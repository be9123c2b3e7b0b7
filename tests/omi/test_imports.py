"""The OMI file codec is pure: importing it loads no gRPC, protobuf or web framework."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_file_codec_imports_no_transport() -> None:
    code = "import sys, json, omi_adapters.codecs.omi_files; print(json.dumps(sorted(sys.modules)))"
    loaded = set(
        json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    )
    assert not loaded & {"grpc", "google.protobuf", "fastapi", "starlette", "pydantic", "uvicorn"}
