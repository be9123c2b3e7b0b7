"""The OMI checks: Modzy's Open Model Interface (the ``ModzyModel`` service of its ``model.proto``).

``Status`` says which input files a model takes and in which media types, not their datatype
or shape. A generated ``Run`` item is therefore raw text for an input that accepts a media type
other than JSON and ``.npy`` (chassis' default, ``application/octet-stream``, is one), and JSON
or ``.npy`` made from the OIP metadata of the model of the same name when the same server's
REST or gRPC port was checked too. ``Shutdown`` is never called: it stops the server.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from omi_adapters.conformance.models import ModelMeta
from omi_adapters.conformance.report import FAIL, PASS, SKIP, Report
from omi_adapters.conformance.tensors import DATATYPES, TEXT, concrete_shape, sample
from omi_adapters.protos import modzy_model_pb2 as pb
from omi_adapters.protos import modzy_model_pb2_grpc as pb_grpc

__all__ = ["run_omi"]

PROTOCOL = "omi"
JSON = "application/json"
NPY = "application/x-npy"
#: The file name of the error of a failed item (the proto's comment on ``OutputItem.success``).
ERROR_FILE = "error"
_NO_SUCH_INPUT = "omi-check-no-such-input"


def run_omi(
    address: str,
    report: Report,
    known: Mapping[str, ModelMeta],
    *,
    timeout: float,
    max_message: int,
    metadata: Sequence[tuple[str, str]] = (),
) -> None:
    """Run the OMI checks against ``address`` (``host:port``, plaintext); ``known`` is OIP metadata by model name."""
    options = [("grpc.max_receive_message_length", max_message), ("grpc.max_send_message_length", max_message)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.ModzyModelStub(channel)  # type: ignore[no-untyped-call] # generated

        def call(method: Any, request: Any) -> Any:
            return method(request, timeout=timeout, metadata=tuple(metadata))

        def failed(check: str, rpc: str, exc: grpc.RpcError) -> None:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                report.add(PROTOCOL, check, FAIL, f"{rpc}: no answer within {timeout:g} s (--timeout)")
            else:
                report.add(PROTOCOL, check, FAIL, f"{rpc}: {code.name} {exc.details()!r}")

        try:
            status = call(stub.Status, pb.StatusRequest())
        except grpc.RpcError as exc:
            failed("status", "Status", exc)
            report.add(PROTOCOL, "remaining checks", SKIP, f"not run: {address} failed its Status call")
            return
        if not _status(report, status):
            report.add(PROTOCOL, "run", SKIP, "Status did not describe the model's inputs and outputs")
        else:
            item = _item(status, known.get(status.model_info.model_name), max_message)
            if isinstance(item, str):
                report.add(PROTOCOL, "run", SKIP, item)
            else:
                try:
                    reply = call(stub.Run, pb.RunRequest(inputs=[pb.InputItem(input=item)]))
                except grpc.RpcError as exc:
                    failed("run", "Run", exc)
                else:
                    _run(report, status, item, reply)
            try:
                reply = call(stub.Run, pb.RunRequest(inputs=[pb.InputItem(input={_NO_SUCH_INPUT: b"1"})]))
            except grpc.RpcError as exc:
                failed("run bad item", "Run", exc)
            else:
                _bad_item(report, reply)
    report.add(PROTOCOL, "shutdown", SKIP, "not called: Shutdown stops the server being checked")


def _status(report: Report, status: Any) -> bool:
    """StatusResponse: 200/"OK", the model's name and version, and its input and output files.

    Returns whether the files are described well enough to make a Run item from.
    """
    problems, files = [], []
    if (status.status_code, status.status) != (200, "OK"):
        problems.append(
            f"status_code/status {status.status_code}/{status.status!r}, expected 200/'OK' ({status.message!r})"
        )
    info = status.model_info
    problems += [f"model_info.{f} is empty" for f in ("model_name", "model_version") if not getattr(info, f)]
    if not status.inputs:
        files.append("no inputs: a client cannot know which files to send")
    files += [f"inputs[{i}]: no filename" for i, x in enumerate(status.inputs) if not x.filename]
    files += [f"input {x.filename!r}: no accepted_media_types" for x in status.inputs if not x.accepted_media_types]
    if not status.outputs:
        files.append("no outputs")
    files += [f"outputs[{i}]: no filename" for i, x in enumerate(status.outputs) if not x.filename]
    if problems or files:
        report.add(PROTOCOL, "status", FAIL, "Status: " + "; ".join(problems + files))
        return not files  # a Run can still be tried when the files are described
    inputs = ", ".join(f"{x.filename} ({', '.join(x.accepted_media_types)})" for x in status.inputs)
    outputs = ", ".join(f"{x.filename} ({x.media_type or 'no media type'})" for x in status.outputs)
    detail = f"200 OK {status.message!r}: {info.model_name} {info.model_version}, {inputs} -> {outputs}"
    report.add(PROTOCOL, "status", PASS, detail)
    return True


def _item(status: Any, meta: ModelMeta | None, limit: int) -> dict[str, bytes] | str:
    """One input item made from Status (and OIP metadata when known), or why none can be made."""
    # Too large to generate: raw text may still do; a JSON or .npy input then says why it cannot.
    too_large = meta.cannot_generate(limit) if meta is not None else None
    tensors = {t.name: t for t in meta.inputs} if meta is not None and not too_large else {}
    item = {}
    for x in status.inputs:
        types = list(x.accepted_media_types)
        tensor = tensors.get(x.filename)
        if any(t not in (JSON, NPY) for t in types):
            item[x.filename] = TEXT.encode()
        elif tensor is not None and JSON in types:
            values = sample(tensor.datatype, concrete_shape(tensor.shape))
            item[x.filename] = json.dumps(
                np.array(values, dtype=object).reshape(concrete_shape(tensor.shape)).tolist()
            ).encode()
        elif tensor is not None and NPY in types and DATATYPES.get(tensor.datatype):
            shape = concrete_shape(tensor.shape)
            buffer = io.BytesIO()
            np.save(buffer, np.array(sample(tensor.datatype, shape), dtype=DATATYPES[tensor.datatype]).reshape(shape))
            item[x.filename] = buffer.getvalue()
        elif too_large:
            return f"input {x.filename!r}: {too_large}"
        else:
            return (
                f"input {x.filename!r} accepts only {', '.join(types)}, and Status gives no datatype or shape: check "
                "the same server's REST URL (or --grpc) too, so its OIP metadata says what to send"
            )
    return item


def _run(report: Report, status: Any, item: Mapping[str, bytes], reply: Any) -> None:
    """RunResponse: 200/"OK", one output item per input item, a successful item holding the declared files."""
    sent = ", ".join(f"{k} ({len(v)} bytes)" for k, v in item.items())
    if reply.status_code != 200 or len(reply.outputs) != 1:
        report.add(PROTOCOL, "run", FAIL, f"Run of one item ({sent}): status_code {reply.status_code}, "
                   f"{len(reply.outputs)} output items, expected 200 and 1")  # fmt: skip
        return
    out = reply.outputs[0]
    files = dict(out.output)
    if not out.success:
        error = files.get(ERROR_FILE, b"").decode("utf-8", "replace")[:200]
        report.add(PROTOCOL, "run", FAIL, f"Run of one item ({sent}): the item failed: {error!r}")
        return
    declared = {x.filename: x.media_type for x in status.outputs}
    problems = [f"file {k!r} is not a declared output" for k in files if k not in declared]
    if not files:
        problems.append("the item has no output files")
    for name, data in files.items():
        if declared.get(name) == JSON:
            try:
                json.loads(data)
            except ValueError:
                problems.append(f"{name!r} is declared {JSON} but is not JSON: {data[:60]!r}")
    if problems:
        report.add(PROTOCOL, "run", FAIL, f"Run of one item ({sent}): " + "; ".join(problems))
    else:
        got = ", ".join(f"{k} ({len(v)} bytes)" for k, v in files.items())
        report.add(PROTOCOL, "run", PASS, f"Run of one item ({sent}): success, {got}")


def _bad_item(report: Report, reply: Any) -> None:
    """An item without the model's input files fails alone: ``success=false`` and an ``error`` file."""
    what = f"Run of an item holding only {_NO_SUCH_INPUT!r}"
    if reply.status_code != 200 or len(reply.outputs) != 1:
        report.add(PROTOCOL, "run bad item", FAIL, f"{what}: status_code {reply.status_code}, "
                   f"{len(reply.outputs)} output items, expected 200 and 1 (a failed item, not a failed Run)")  # fmt: skip
        return
    out = reply.outputs[0]
    if out.success:
        report.add(PROTOCOL, "run bad item", FAIL, f"{what}: the item succeeded")
    elif ERROR_FILE not in out.output:
        report.add(PROTOCOL, "run bad item", FAIL, f"{what}: success=false without an {ERROR_FILE!r} file")
    else:
        error = out.output[ERROR_FILE].decode("utf-8", "replace")[:120]
        report.add(PROTOCOL, "run bad item", PASS, f"{what}: success=false, error {error!r}")
