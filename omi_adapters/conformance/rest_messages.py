"""OIP REST messages for the checks: request bodies made from model metadata, replies read against it.

Requests follow the OIP's REST API (``$inference_request``) and Triton's binary tensor data
extension (``binary_data_size``, ``Inference-Header-Content-Length``); a reply is read as
``$inference_response``, with binary outputs after its JSON header when it has them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from omi_adapters.conformance.models import ModelMeta
from omi_adapters.conformance.rest_client import Answer
from omi_adapters.conformance.tensors import (
    concrete_shape,
    flatten,
    raw_bytes,
    raw_size_problem,
    sample,
    tensor_problems,
)

__all__ = [
    "HEADER_LENGTH",
    "binary_body",
    "binary_inputs",
    "describe_outputs",
    "error_problem",
    "json_inputs",
    "json_object",
    "read_reply",
]

HEADER_LENGTH = "Inference-Header-Content-Length"


def binary_body(header: Mapping[str, Any], meta: ModelMeta) -> tuple[bytes, dict[str, str]]:
    """The JSON ``header`` followed by every input's generated raw bytes, and the headers that say so."""
    text = json.dumps(header).encode()
    blobs = b"".join(raw_bytes(t.datatype, sample(t.datatype, concrete_shape(t.shape))) for t in meta.inputs)
    return text + blobs, {HEADER_LENGTH: str(len(text)), "Content-Type": "application/octet-stream"}


def json_inputs(meta: ModelMeta) -> list[dict[str, Any]]:
    """Every input as ``$request_input`` with generated JSON data (each -1 dimension 1)."""
    inputs = []
    for t in meta.inputs:
        shape = concrete_shape(t.shape)
        inputs.append({"name": t.name, "datatype": t.datatype, "shape": shape, "data": sample(t.datatype, shape)})
    return inputs


def binary_inputs(meta: ModelMeta) -> list[dict[str, Any]]:
    """Every input as ``$request_input`` whose data follows the header (``binary_data_size``, no ``data``)."""
    inputs = []
    for t in meta.inputs:
        shape = concrete_shape(t.shape)
        size = len(raw_bytes(t.datatype, sample(t.datatype, shape)))
        inputs.append(
            {"name": t.name, "datatype": t.datatype, "shape": shape, "parameters": {"binary_data_size": size}}
        )
    return inputs


def json_object(answer: Answer) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        doc = answer.json()
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def error_problem(answer: Answer, statuses: Sequence[int]) -> str | None:
    """What is wrong with an error answer: the status, or a body that is not ``{"error": string}``."""
    doc = json_object(answer)
    wanted = " or ".join(map(str, statuses))
    if answer.status not in statuses:
        return f'expected {wanted} with {{"error": string}}, got {answer.describe()}'
    if doc is None or not isinstance(doc.get("error"), str):
        return f'{answer.status}, but the body is not {{"error": string}}: {answer.excerpt()}'
    return None


def describe_outputs(reply: Mapping[str, Any]) -> str:
    """``Y FP32 [1, 3], label BYTES [1]``."""
    return ", ".join(f"{o['name']} {o['datatype']} {o['shape']}" for o in reply["outputs"])


def read_reply(meta: ModelMeta, answer: Answer, binary: bool = False) -> tuple[dict[str, Any] | None, list[str]]:
    """Read ``$inference_response`` (with binary outputs when ``binary``); check it against the metadata.

    Returns the reply (None when it is not a JSON object with outputs) and what is wrong with it.
    """
    if answer.status != 200:
        return None, [f"expected 200, got {answer.describe()}"]
    body, tail = answer.body, b""
    length = answer.headers.get(HEADER_LENGTH.lower())
    if length is not None:
        if not length.isdigit() or int(length) > len(body):
            return None, [f"{HEADER_LENGTH} is {length!r} for a body of {len(body)} bytes"]
        body, tail = body[: int(length)], body[int(length) :]
    elif binary:
        return None, [f"binary outputs were asked for, but the reply has no {HEADER_LENGTH}: {answer.excerpt()}"]
    try:
        doc = json.loads(body)
    except ValueError:
        return None, [f"the reply is not JSON: {answer.excerpt()}"]
    if not isinstance(doc, dict):
        return None, [f"the reply is not a JSON object: {answer.excerpt()}"]
    problems = []
    if doc.get("model_name") != meta.name:
        problems.append(f"model_name is {doc.get('model_name')!r}, expected {meta.name!r}")
    outputs = doc.get("outputs")
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        return None, [*problems, f"outputs is not a list of named tensors: {answer.excerpt()}"]
    declared = {t.name: t for t in meta.outputs}
    got = [o["name"] for o in outputs]
    if sorted(got) != sorted(declared):
        problems.append(f"outputs {got}, metadata declares {list(declared)} (all are returned when none are asked)")
    offset = 0
    for out in outputs:
        spec = declared.get(out["name"])
        if spec is None:
            continue
        shape_problems = tensor_problems(spec, out.get("datatype"), out.get("shape"))
        problems += shape_problems
        shape = out.get("shape") if not shape_problems else None
        size = (out.get("parameters") or {}).get("binary_data_size")
        if binary and size is None:
            problems.append(f"output {spec.name}: no binary_data_size although binary_data_output was asked")
        elif size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(tail):
                problems.append(f"output {spec.name}: binary_data_size {size!r} runs past the {len(tail)} binary bytes")
                break
            if shape is not None and (problem := raw_size_problem(spec, shape, tail[offset : offset + size])):
                problems.append(problem)
            offset += size
        elif "data" not in out:
            problems.append(f"output {spec.name}: no data")
        elif shape is not None and len(flatten(out["data"])) != math.prod(shape):
            problems.append(f"output {spec.name}: {len(flatten(out['data']))} elements of data for shape {shape}")
    if not problems and offset != len(tail):
        problems.append(f"{len(tail) - offset} bytes after the binary outputs")
    return doc, problems
