"""The committed generated code is what the pinned grpcio-tools makes of ``protos/``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--out", str(tmp_path)], cwd=ROOT, check=True, capture_output=True
    )
    committed = ROOT / "omi_adapters" / "protos"
    generated = sorted(p.name for p in tmp_path.iterdir() if p.name != "__init__.py")
    assert generated, "no code generated"
    expected = sorted(p.name for p in committed.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")))
    assert generated == expected
    for name in generated:
        assert (tmp_path / name).read_text() == (committed / name).read_text(), f"{name} drifted: run make protos"


def test_every_proto_is_importable_without_tritonclient() -> None:
    # Our ``inference`` package and tritonclient's share a protobuf namespace, so check in a
    # clean interpreter that the generated modules import and describe the services.
    code = (
        "from omi_adapters.protos import open_inference_grpc_pb2 as p, modzy_model_pb2 as m;"
        "print(p.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name,"
        " m.DESCRIPTOR.services_by_name['ModzyModel'].full_name)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert out.split() == ["inference.GRPCInferenceService", "ModzyModel"]
