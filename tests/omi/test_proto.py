"""The OMI proto is wire-compatible with existing clients (OMI's ``model.proto``: no proto package, chassis' field numbers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from omi_adapters.protos import modzy_model_pb2 as pb
from tests.conftest import ROOT

# message -> {field name: (number, type, label)} as OMI's model.proto declares them.
S, B, F, I32, MSG = "TYPE_STRING", "TYPE_BOOL", "TYPE_FLOAT", "TYPE_INT32", "TYPE_MESSAGE"
BYTES = "TYPE_BYTES"
ONE, MANY = "LABEL_OPTIONAL", "LABEL_REPEATED"
SPEC: dict[str, dict[str, tuple[int, str, str]]] = {
    "StatusRequest": {},
    "ModelInfo": {"model_name": (1, S, ONE), "model_version": (2, S, ONE), "model_author": (3, S, ONE),
                  "model_type": (4, S, ONE), "source": (5, S, ONE)},
    "ModelDescription": {"summary": (1, S, ONE), "details": (2, S, ONE), "technical": (3, S, ONE),
                         "performance": (4, S, ONE)},
    "ModelInput": {"filename": (1, S, ONE), "accepted_media_types": (2, S, MANY), "max_size": (3, S, ONE),
                   "description": (4, S, ONE)},
    "ModelOutput": {"filename": (1, S, ONE), "media_type": (2, S, ONE), "max_size": (3, S, ONE),
                    "description": (4, S, ONE)},
    "ModelResources": {"required_ram": (1, S, ONE), "num_cpus": (2, F, ONE), "num_gpus": (3, I32, ONE)},
    "ModelTimeout": {"status": (1, S, ONE), "run": (2, S, ONE)},
    "ModelFeatures": {"adversarial_defense": (1, B, ONE), "batch_size": (2, I32, ONE), "retrainable": (3, B, ONE),
                      "results_format": (4, S, ONE), "drift_format": (5, S, ONE), "explanation_format": (6, S, ONE)},
    "StatusResponse": {"status_code": (1, I32, ONE), "status": (2, S, ONE), "message": (3, S, ONE),
                       "model_info": (4, MSG, ONE), "description": (5, MSG, ONE), "inputs": (6, MSG, MANY),
                       "outputs": (7, MSG, MANY), "resources": (8, MSG, ONE), "timeout": (9, MSG, ONE),
                       "features": (10, MSG, ONE)},
    "InputItem": {"input": (1, MSG, MANY)},
    "RunRequest": {"inputs": (1, MSG, MANY), "detect_drift": (2, B, ONE), "explain": (3, B, ONE)},
    "OutputItem": {"output": (1, MSG, MANY), "success": (2, B, ONE)},
    "RunResponse": {"status_code": (1, I32, ONE), "status": (2, S, ONE), "message": (3, S, ONE),
                    "outputs": (4, MSG, MANY)},
    "ShutdownRequest": {},
    "ShutdownResponse": {"status_code": (1, I32, ONE), "status": (2, S, ONE), "message": (3, S, ONE)},
}  # fmt: skip
TYPE_NAMES = {
    ("StatusResponse", "model_info"): ".ModelInfo", ("StatusResponse", "description"): ".ModelDescription",
    ("StatusResponse", "inputs"): ".ModelInput", ("StatusResponse", "outputs"): ".ModelOutput",
    ("StatusResponse", "resources"): ".ModelResources", ("StatusResponse", "timeout"): ".ModelTimeout",
    ("StatusResponse", "features"): ".ModelFeatures", ("RunRequest", "inputs"): ".InputItem",
    ("OutputItem", "output"): ".OutputItem.OutputEntry", ("InputItem", "input"): ".InputItem.InputEntry",
    ("RunResponse", "outputs"): ".OutputItem",
}  # fmt: skip


def serialized() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    proto.ParseFromString(pb.DESCRIPTOR.serialized_pb)
    return proto


def test_no_package_and_the_service_paths() -> None:
    proto = serialized()
    assert proto.package == ""
    assert proto.syntax == "proto3"
    assert proto.options.java_package == "com.modzy.model.grpc" and proto.options.java_multiple_files
    [service] = proto.service
    assert service.name == "ModzyModel"
    methods = {m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in service.method}
    assert methods == {
        "Status": (".StatusRequest", ".StatusResponse", False, False),
        "Run": (".RunRequest", ".RunResponse", False, False),
        "Shutdown": (".ShutdownRequest", ".ShutdownResponse", False, False),
    }
    assert pb.DESCRIPTOR.services_by_name["ModzyModel"].methods_by_name["Run"].full_name == "ModzyModel.Run"


def test_every_message_and_field_number_is_the_specs() -> None:
    proto = serialized()
    messages = {m.name: m for m in proto.message_type}
    assert set(messages) == set(SPEC)
    for name, fields in SPEC.items():
        got = {
            f.name: (f.number, descriptor_pb2.FieldDescriptorProto.Type.Name(f.type),
                     descriptor_pb2.FieldDescriptorProto.Label.Name(f.label))
            for f in messages[name].field
        }  # fmt: skip
        assert got == fields, name
        for field in messages[name].field:
            if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE:
                assert field.type_name == TYPE_NAMES[(name, field.name)]


def test_the_maps_are_string_to_bytes_with_key_1_value_2() -> None:
    messages = {m.name: m for m in serialized().message_type}
    for owner, entry in (("InputItem", "InputEntry"), ("OutputItem", "OutputEntry")):
        [nested] = messages[owner].nested_type
        assert nested.name == entry and nested.options.map_entry
        fields = {f.name: (f.number, descriptor_pb2.FieldDescriptorProto.Type.Name(f.type)) for f in nested.field}
        assert fields == {"key": (1, S), "value": (2, BYTES)}


def test_bytes_on_the_wire_are_what_a_spec_client_sends() -> None:
    # Hand-encoded: RunRequest{inputs=[InputItem{input={"X": b"1"}}], explain=true}.
    entry = b"\x0a\x01X" + b"\x12\x011"
    item = b"\x0a" + bytes([len(entry)]) + entry
    wire = b"\x0a" + bytes([len(item)]) + item + b"\x18\x01"
    request = pb.RunRequest.FromString(wire)
    assert dict(request.inputs[0].input) == {"X": b"1"} and request.explain and not request.detect_drift
    assert request.SerializeToString(deterministic=True) == wire


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in ("modzy_model_pb2.py", "modzy_model_pb2.pyi", "modzy_model_pb2_grpc.py"):
        committed = (ROOT / "omi_adapters" / "protos" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"{name} drifted from protos/modzy_model.proto: make protos"
