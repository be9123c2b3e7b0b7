"""Optional OMI metadata of a model: what the OMI ``Status`` reply carries (OMI's ``model.proto``).

Every field has the default chassis uses, so a model declares only what it knows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from omi_adapters.errors import ConfigurationError

__all__ = ["Description", "Features", "OmiMetadata", "Resources", "Timeouts", "parse_duration", "parse_size"]


@dataclass(frozen=True)
class Description:
    """ModelDescription: summary, details, technical notes, performance."""

    summary: str = ""
    details: str = ""
    technical: str = ""
    performance: str = ""


@dataclass(frozen=True)
class Resources:
    """ModelResources: RAM as a Kubernetes quantity, fractional CPUs, whole GPUs."""

    required_ram: str = "512M"
    num_cpus: float = 1.0
    num_gpus: int = 0


@dataclass(frozen=True)
class Timeouts:
    """ModelTimeout: the time allowed to initialize (``status``) and per inference (``run``)."""

    status: str = "60s"
    run: str = "60s"


@dataclass(frozen=True)
class Features:
    """ModelFeatures; ``batch_size`` is not here: it comes from the model's ``max_batch_size``."""

    adversarial_defense: bool = False
    retrainable: bool = False
    results_format: str = ""
    drift_format: str = ""
    explanation_format: str = ""


@dataclass(frozen=True)
class OmiMetadata:
    """Everything of the OMI ``Status`` reply that is not derived from the tensors."""

    author: str = ""
    model_type: str = "grpc"
    source: str = "omi-adapters"
    description: Description = field(default_factory=Description)
    resources: Resources = field(default_factory=Resources)
    timeouts: Timeouts = field(default_factory=Timeouts)
    features: Features = field(default_factory=Features)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def build_metadata(
    *,
    author: str,
    model_type: str,
    source: str,
    description: str | Mapping[str, str] | Description | None,
    resources: Mapping[str, Any] | Resources | None,
    timeouts: Mapping[str, str] | Timeouts | None,
    features: Mapping[str, Any] | Features | None,
) -> OmiMetadata:
    """Build and check :class:`OmiMetadata` from the decorator's keyword data."""
    if isinstance(description, str):
        description = Description(summary=description)
    metadata = OmiMetadata(
        author=author,
        model_type=model_type,
        source=source,
        description=_section(Description, description, "description"),
        resources=_section(Resources, resources, "resources"),
        timeouts=_section(Timeouts, timeouts, "timeouts"),
        features=_section(Features, features, "features"),
    )
    parse_size(metadata.resources.required_ram, "resources.required_ram")
    if metadata.resources.num_cpus <= 0:
        raise ConfigurationError("resources.num_cpus must be positive")
    if metadata.resources.num_gpus < 0:
        raise ConfigurationError("resources.num_gpus must not be negative")
    parse_duration(metadata.timeouts.status, "timeouts.status")
    parse_duration(metadata.timeouts.run, "timeouts.run")
    return metadata


def _section(cls: type[Any], value: Any, name: str) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a mapping or {cls.__name__}, got {type(value).__name__}")
    known = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigurationError(f"{name}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return cls(**value)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}  # fmt: skip


def parse_size(text: str, where: str) -> int:
    """Parse an OMI size such as ``"1M"``, ``"10Mi"`` or ``"1.5G"`` into bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigurationError(f"{where}: {text!r} is not a size such as '512M' or '1.5Gi'")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()])


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, where: str) -> float:
    """Parse an OMI duration such as ``"60s"``, ``"2m"`` or ``"500ms"`` into seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigurationError(f"{where}: {text!r} is not a duration such as '60s' or '2m'")
    number, unit = match.groups()
    return float(number) * _SECONDS[unit or "s"]
