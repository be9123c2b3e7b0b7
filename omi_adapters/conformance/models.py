"""Model metadata as the checks read it, from the OIP's REST JSON or its gRPC message alike."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omi_adapters.conformance.tensors import DATATYPES, JSON_UNSAFE, TensorMeta, concrete_shape

__all__ = ["ModelMeta", "Models", "parse_metadata"]


@dataclass(frozen=True)
class ModelMeta:
    """A model's metadata: ``$metadata_model_response`` of the OIP's REST API."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]

    def cannot_generate(self, limit: int) -> str | None:
        """Why no request can be made up for this model within ``limit`` bytes (None when one can)."""
        if not self.inputs:
            return "the metadata declares no inputs: nothing to generate a request from"
        # About 16 bytes an element covers JSON text and raw data of every datatype.
        size = 16 * sum(math.prod(concrete_shape(t.shape)) for t in self.inputs)
        if size > limit:
            return f"the smallest request its metadata allows is about {size} bytes, over --max-body {limit}"
        return None

    @property
    def json_safe(self) -> bool:
        """Every input can be written as JSON data (none is FP16 or BF16)."""
        return not any(t.datatype in JSON_UNSAFE for t in self.inputs)


@dataclass
class Models:
    """What one protocol's checks learnt, for the next ones: the names to check and their metadata."""

    names: list[str] = field(default_factory=list)
    #: Where the names came from, for detail lines (``--model``, the repository index).
    source: str = ""
    metadata: dict[str, ModelMeta] = field(default_factory=dict)


def _tensors(value: Any, where: str, problems: list[str]) -> tuple[TensorMeta, ...]:
    if not isinstance(value, list):
        problems.append(f"{where} is {type(value).__name__}, not a list")
        return ()
    found = []
    for i, item in enumerate(value):
        label = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{label} is not an object")
            continue
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            problems.append(f"{label}.name is {name!r}, not a non-empty string")
            continue
        if datatype not in DATATYPES:
            problems.append(f"{label} ({name}): datatype {datatype!r} is not an OIP datatype")
            continue
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            problems.append(f"{label} ({name}): shape {shape!r} is not a list of integers")
            continue
        if any(d < -1 for d in shape):
            problems.append(f"{label} ({name}): shape {shape} has a dimension below -1")
            continue
        found.append(TensorMeta(name, datatype, tuple(shape)))
    return tuple(found)


def parse_metadata(doc: Any, expected_name: str) -> tuple[ModelMeta | None, list[str]]:
    """Read and check ``$metadata_model_response``; returns the metadata and what is wrong with it.

    Required (the OIP's REST API schema): ``name`` (the model asked for), ``platform``, ``inputs``
    and ``outputs`` of ``{"name", "datatype", "shape"}``; ``versions`` is optional, a list of strings.
    """
    if not isinstance(doc, Mapping):
        return None, [f"the metadata is {type(doc).__name__}, not an object"]
    problems: list[str] = []
    if doc.get("name") != expected_name:
        problems.append(f"name is {doc.get('name')!r}, expected {expected_name!r}")
    platform = doc.get("platform")
    if not isinstance(platform, str):
        problems.append(f"platform is {platform!r}, not a string")
    # Optional: KServe writes null for a model without versions, taken as absent.
    versions = doc.get("versions") or []
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        problems.append(f"versions is {versions!r}, not a list of strings")
        versions = []
    inputs = _tensors(doc.get("inputs"), "inputs", problems)
    outputs = _tensors(doc.get("outputs"), "outputs", problems)
    meta = ModelMeta(expected_name, tuple(versions), platform if isinstance(platform, str) else "", inputs, outputs)
    return meta, problems
