"""The gRPC checks: the Open Inference Protocol's gRPC API (``open_inference_grpc.proto``, ``inference_grpc.md``).

The OIP says errors are gRPC statuses other than OK without naming them; the codes expected
here are the ones every reference server (KServe, Triton, MLServer) uses: ``INVALID_ARGUMENT``
for a bad request, ``NOT_FOUND`` (or ``INVALID_ARGUMENT``, Triton's) for an unknown model.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from omi_adapters.conformance.models import ModelMeta, parse_metadata
from omi_adapters.conformance.report import FAIL, PASS, SKIP, Report
from omi_adapters.conformance.rest_checks import UNKNOWN_MODEL
from omi_adapters.conformance.tensors import (
    concrete_shape,
    raw_bytes,
    raw_size_problem,
    sample,
    tensor_problems,
    wrong_datatype,
)
from omi_adapters.protos import open_inference_grpc_pb2 as pb
from omi_adapters.protos import open_inference_grpc_pb2_grpc as pb_grpc

__all__ = ["CONTENTS_FIELDS", "run_grpc", "server_ready"]

PROTOCOL = "grpc"
T = TypeVar("T")

#: The ``InferTensorContents`` field of each datatype (FP16 and BF16 have none: raw contents only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
_UNKNOWN_MODEL_CODES = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def server_ready(address: str, *, timeout: float, metadata: Sequence[tuple[str, str]] = ()) -> bool:
    """One ServerReady call (for ``omi check --wait``); a failed call raises ``grpc.RpcError``."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call] # generated
        return bool(stub.ServerReady(pb.ServerReadyRequest(), timeout=timeout, metadata=tuple(metadata)).ready)


class _Stop(Exception):
    """The server cannot be reached: the rest of its checks are skipped."""


def run_grpc(
    address: str,
    report: Report,
    model_names: Sequence[str],
    *,
    timeout: float,
    max_message: int,
    metadata: Sequence[tuple[str, str]] = (),
) -> dict[str, ModelMeta]:
    """Run every gRPC check against ``address`` (``host:port``, plaintext); returns the models' metadata."""
    options = [("grpc.max_receive_message_length", max_message), ("grpc.max_send_message_length", max_message)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call] # generated
        checks = _GrpcChecks(stub, report, timeout, tuple(metadata), address, max_message)
        try:
            checks.run(model_names)
        except _Stop as stop:
            report.add(PROTOCOL, "remaining checks", SKIP, f"not run: {stop}")
        return checks.found


class _GrpcChecks:
    def __init__(
        self,
        stub: pb_grpc.GRPCInferenceServiceStub,
        report: Report,
        timeout: float,
        metadata: tuple[tuple[str, str], ...],
        address: str,
        max_message: int,
    ) -> None:
        self.stub = stub
        self.report = report
        self.timeout = timeout
        self.metadata = metadata
        self.address = address
        self.max_message = max_message
        self.found: dict[str, ModelMeta] = {}

    def add(self, check: str, outcome: Any, detail: str) -> None:
        self.report.add(PROTOCOL, check, outcome, detail)

    def call(self, method: Callable[..., T], request: Any) -> T:
        return method(request, timeout=self.timeout, metadata=self.metadata)

    def failed(self, check: str, rpc: str, exc: grpc.RpcError, first: bool = False) -> None:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            detail = f"{rpc}: no answer within {self.timeout:g} s (--timeout)"
        else:
            detail = f"{rpc}: {code.name} {exc.details()!r}"
        self.add(check, FAIL, detail)
        if first:
            raise _Stop(f"{self.address} failed its first call ({code.name})")

    def run(self, model_names: Sequence[str]) -> None:
        try:
            live = self.call(self.stub.ServerLive, pb.ServerLiveRequest()).live
        except grpc.RpcError as exc:
            self.failed("server live", "ServerLive", exc, first=True)
        else:
            self.add("server live", PASS if live else FAIL, f"ServerLive: live={live}")
        try:
            ready = self.call(self.stub.ServerReady, pb.ServerReadyRequest()).ready
        except grpc.RpcError as exc:
            self.failed("server ready", "ServerReady", exc)
        else:
            self.add("server ready", PASS if ready else FAIL, f"ServerReady: ready={ready}")
        self.server_metadata()
        if not model_names:
            self.add(
                "models", SKIP, "the OIP's gRPC API has no RPC that lists models: name them with --model NAME, "
                "or give the server's REST URL when it lists the model_repository extension",
            )  # fmt: skip
        for name in model_names:
            meta = self.model_metadata(name)
            if meta is not None:
                self.found[name] = meta
                self.model_checks(meta)
        self.unknown_model()

    def server_metadata(self) -> None:
        check = "server metadata"
        try:
            reply = self.call(self.stub.ServerMetadata, pb.ServerMetadataRequest())
        except grpc.RpcError as exc:
            self.failed(check, "ServerMetadata", exc)
            return
        if not reply.name:
            self.add(check, FAIL, "ServerMetadata: name is empty")
            return
        self.add(check, PASS, f"name={reply.name!r} version={reply.version!r} extensions={list(reply.extensions)}")

    def model_metadata(self, name: str) -> ModelMeta | None:
        check = f"model metadata [{name}]"
        try:
            reply = self.call(self.stub.ModelMetadata, pb.ModelMetadataRequest(name=name))
        except grpc.RpcError as exc:
            self.failed(check, "ModelMetadata", exc)
            return None
        doc = {
            "name": reply.name,
            "versions": list(reply.versions),
            "platform": reply.platform,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in reply.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in reply.outputs],
        }
        meta, problems = parse_metadata(doc, name)
        if problems or meta is None:
            self.add(check, FAIL, "ModelMetadata: " + "; ".join(problems))
            return None
        tensors = ", ".join(t.describe() for t in meta.inputs) + " -> " + ", ".join(t.describe() for t in meta.outputs)
        self.add(check, PASS, f"platform={meta.platform!r} versions={list(meta.versions)} {tensors}")
        return meta

    def model_checks(self, meta: ModelMeta) -> None:
        check = f"model ready [{meta.name}]"
        try:
            ready = self.call(self.stub.ModelReady, pb.ModelReadyRequest(name=meta.name)).ready
        except grpc.RpcError as exc:
            self.failed(check, "ModelReady", exc)
        else:
            self.add(check, PASS if ready else FAIL, f"ModelReady: ready={ready}")
        if reason := meta.cannot_generate(self.max_message):
            self.add(f"inference [{meta.name}]", SKIP, reason)
            return
        self.infer(meta, raw=False)
        self.infer(meta, raw=True)
        self.versioned(meta)
        self.bad_input(meta, "wrong datatype")
        self.bad_input(meta, "wrong shape")

    def infer(self, meta: ModelMeta, raw: bool) -> None:
        """ModelInfer with typed ``contents`` or with ``raw_input_contents``; the reply must match the metadata."""
        check = f"infer {'raw' if raw else 'typed'} contents [{meta.name}]"
        if not raw and not meta.json_safe:
            self.add(check, SKIP, "an FP16 or BF16 input has no typed contents (the OIP's gRPC API): see the raw row")
            return
        request = _request(meta, raw)
        request.id = f"omi-check-{uuid.uuid4().hex[:12]}"
        try:
            reply = self.call(self.stub.ModelInfer, request)
        except grpc.RpcError as exc:
            self.failed(check, "ModelInfer", exc)
            return
        problems = _reply_problems(meta, reply)
        if reply.id != request.id:
            problems.append(f"sent id {request.id!r}, the reply has id {reply.id!r}")
        if problems:
            self.add(check, FAIL, "ModelInfer: " + "; ".join(problems))
        else:
            outputs = ", ".join(f"{o.name} {o.datatype} {list(o.shape)}" for o in reply.outputs)
            form = "raw" if reply.raw_output_contents else "typed"
            self.add(check, PASS, f"ModelInfer: {outputs} ({form} outputs), id echoed")

    def versioned(self, meta: ModelMeta) -> None:
        """The ``version`` fields of ModelMetadata, ModelReady and ModelInfer name a version the metadata lists."""
        check = f"versioned [{meta.name}]"
        if not meta.versions:
            self.add(check, SKIP, "the metadata lists no versions")
            return
        version = meta.versions[0]
        request = _request(meta, raw=True)
        request.model_version = version
        try:
            named = self.call(self.stub.ModelMetadata, pb.ModelMetadataRequest(name=meta.name, version=version)).name
            ready = self.call(self.stub.ModelReady, pb.ModelReadyRequest(name=meta.name, version=version)).ready
            reply = self.call(self.stub.ModelInfer, request)
        except grpc.RpcError as exc:
            self.failed(check, f"version {version!r}", exc)
            return
        problems = [f"ModelMetadata names {named!r}"] if named != meta.name else []
        problems += [] if ready else ["ModelReady: ready=False"]
        problems += [f"ModelInfer: {p}" for p in _reply_problems(meta, reply)]
        if reply.model_version not in ("", version):
            problems.append(f"ModelInfer: model_version {reply.model_version!r}, asked {version!r}")
        if problems:
            self.add(check, FAIL, f"version {version!r}: " + "; ".join(problems))
        else:
            self.add(check, PASS, f"version {version!r}: ModelMetadata, ModelReady and ModelInfer answered")

    def bad_input(self, meta: ModelMeta, kind: str) -> None:
        """An input of the wrong datatype, or of the wrong rank, is the client's error: ``INVALID_ARGUMENT``."""
        check = f"{kind} [{meta.name}]"
        request = _request(meta, raw=True)  # raw for every input: no datatype lacks a raw form
        first, tensor = meta.inputs[0], request.inputs[0]
        shape = concrete_shape(first.shape)
        if kind == "wrong datatype":
            datatype, element = wrong_datatype(first.datatype)
            tensor.datatype = datatype
            request.raw_input_contents[0] = raw_bytes(datatype, element * math.prod(shape))
            what = f"ModelInfer with {first.name} as {datatype} {shape} (declared {first.datatype})"
        else:
            tensor.shape.append(1)
            what = f"ModelInfer with {first.name} as {first.datatype} {[*shape, 1]} (declared {list(first.shape)})"
        codes = (grpc.StatusCode.INVALID_ARGUMENT,)
        code = self.expect_code(check, what, lambda: self.call(self.stub.ModelInfer, request), codes)
        if code is not None:
            self.add(check, PASS, f"{what}: {code.name}")

    def expect_code(
        self, check: str, what: str, do: Callable[[], Any], codes: Sequence[grpc.StatusCode]
    ) -> grpc.StatusCode | None:
        wanted = " or ".join(c.name for c in codes)
        try:
            do()
        except grpc.RpcError as exc:
            if exc.code() in codes:
                return exc.code()
            self.add(check, FAIL, f"{what}: expected {wanted}, got {exc.code().name} {exc.details()!r}")
            return None
        self.add(check, FAIL, f"{what}: expected {wanted}, got OK")
        return None

    def unknown_model(self) -> None:
        check = "unknown model ready"
        try:
            ready = self.call(self.stub.ModelReady, pb.ModelReadyRequest(name=UNKNOWN_MODEL)).ready
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                self.add(check, PASS, f"ModelReady of {UNKNOWN_MODEL!r}: NOT_FOUND")
            else:
                self.add(check, FAIL, f"ModelReady of {UNKNOWN_MODEL!r}: expected ready=false or NOT_FOUND, got "
                         f"{exc.code().name} {exc.details()!r}")  # fmt: skip
        else:
            self.add(check, FAIL if ready else PASS, f"ModelReady of {UNKNOWN_MODEL!r}: ready={ready}")
        check = "unknown model"
        request = pb.ModelInferRequest(model_name=UNKNOWN_MODEL)
        request.inputs.add(name="INPUT0", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
        codes = []
        for rpc, do in (
            ("ModelMetadata", lambda: self.call(self.stub.ModelMetadata, pb.ModelMetadataRequest(name=UNKNOWN_MODEL))),
            ("ModelInfer", lambda: self.call(self.stub.ModelInfer, request)),
        ):
            code = self.expect_code(check, f"{rpc} of {UNKNOWN_MODEL!r}", do, _UNKNOWN_MODEL_CODES)
            if code is None:
                return
            codes.append(f"{rpc} {code.name}")
        self.add(check, PASS, ", ".join(codes))


def _request(meta: ModelMeta, raw: bool) -> Any:
    """A ModelInferRequest of generated inputs, as typed ``contents`` or as ``raw_input_contents``."""
    request = pb.ModelInferRequest(model_name=meta.name)
    for t in meta.inputs:
        shape = concrete_shape(t.shape)
        tensor = request.inputs.add(name=t.name, datatype=t.datatype, shape=shape)
        values = sample(t.datatype, shape)
        if raw:
            request.raw_input_contents.append(raw_bytes(t.datatype, values))
        else:
            _fill(tensor.contents, t.datatype, values)
    return request


def _fill(contents: Any, datatype: str, values: Sequence[Any]) -> None:
    if datatype == "BYTES":
        values = [v.encode() if isinstance(v, str) else v for v in values]
    getattr(contents, CONTENTS_FIELDS[datatype]).extend(values)


def _reply_problems(meta: ModelMeta, reply: Any) -> list[str]:
    problems = []
    if reply.model_name != meta.name:
        problems.append(f"model_name is {reply.model_name!r}, expected {meta.name!r}")
    declared: Mapping[str, Any] = {t.name: t for t in meta.outputs}
    got = [o.name for o in reply.outputs]
    if sorted(got) != sorted(declared):
        problems.append(f"outputs {got}, metadata declares {list(declared)} (all are returned when none are asked)")
    raw = list(reply.raw_output_contents)
    if raw and len(raw) != len(reply.outputs):
        return [*problems, f"{len(raw)} raw_output_contents for {len(reply.outputs)} outputs"]
    for i, out in enumerate(reply.outputs):
        spec = declared.get(out.name)
        if spec is None:
            continue
        shape = list(out.shape)
        shape_problems = tensor_problems(spec, out.datatype, shape)
        problems += shape_problems
        if shape_problems:
            continue
        if raw:
            if problem := raw_size_problem(spec, shape, raw[i]):
                problems.append(problem)
        elif spec.datatype not in CONTENTS_FIELDS:
            problems.append(f"output {spec.name}: {spec.datatype} must travel in raw_output_contents")
        else:
            count = len(getattr(out.contents, CONTENTS_FIELDS[spec.datatype]))
            if count != math.prod(shape):
                problems.append(f"output {spec.name}: {count} elements in contents for shape {shape}")
    return problems
