"""Check a Knative Service manifest before it is written: the CRD schema, then admission rules.

The schema is Knative Serving's own Service CRD (v1.23, shipped in ``schemas/``, or read from a
path). Its ``openAPIV3Schema`` is checked with jsonschema (Draft 4, whose
semantics the OpenAPI v3 schemas of CRDs follow) in *strict* mode: every object that declares properties and does not say
``x-kubernetes-preserve-unknown-fields`` is closed, so a misspelt field is an error instead of
being pruned silently by the API server.

The webhook rules the schema cannot express (Knative's webhook: port names,
reserved ports and variables, probe handlers) are checked by :func:`admission_errors`; they apply to the pod spec of a
KServe predictor too, since KServe's serverless mode makes a Knative Service of it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from omi_adapters.errors import ConfigurationError

__all__ = [
    "PORT_NAMES",
    "RESERVED_ENV",
    "RESERVED_PORTS",
    "admission_errors",
    "container_errors",
    "load_schema",
    "schema_errors",
    "strict",
    "validate_service",
]

CRD_FILE = "knative-serving-v1.23-service-crd.yaml"
#: Ports the queue-proxy and Knative's sidecars bind in every pod.
RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091, 8008})
#: Set by Knative on every revision (runtime contract); a user value is refused.
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
#: The port name selects the protocol the queue-proxy speaks to the container.
PORT_NAMES = frozenset({"", "h2c", "http1"})
RESERVED_CONTAINER_NAMES = frozenset({"queue-proxy"})
#: Knative's default max-revision-timeout-seconds (config-defaults).
MAX_TIMEOUT_SECONDS = 600
#: The default container-concurrency-max-limit (config-defaults).
MAX_CONTAINER_CONCURRENCY = 1000
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")
_AUTOSCALING = "autoscaling.knative.dev/"


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The strict ``openAPIV3Schema`` of the Service CRD: the shipped one, or the CRD at ``path``."""
    # The shipped CRD never changes, so it is parsed once; a CRD given by path is read each time.
    schema = _shipped_schema() if path is None else _load_schema(str(path))
    return copy.deepcopy(schema)


@lru_cache(maxsize=1)
def _shipped_schema() -> dict[str, Any]:
    return _load_schema(None)


def _load_schema(path: str | None) -> dict[str, Any]:
    try:
        if path is None:
            text = resources.files("omi_knative").joinpath("schemas", CRD_FILE).read_text()
        else:
            text = Path(path).read_text()
        crd = yaml.safe_load(text)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = version["schema"]["openAPIV3Schema"]
    except OSError as exc:
        raise ConfigurationError(f"cannot read the Knative Service CRD {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, KeyError, TypeError, StopIteration):
        raise ConfigurationError(f"{path or CRD_FILE} is not a Knative Service CRD with a v1 openAPIV3Schema") from None
    if not isinstance(schema, dict):
        raise ConfigurationError(f"{path or CRD_FILE}: its v1 openAPIV3Schema is not a mapping")
    return dict(strict(schema))


def strict(schema: Any) -> Any:
    """A copy of ``schema`` where every object with declared properties rejects unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) if key != "properties" else value for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def schema_errors(manifest: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every way ``manifest`` breaks ``schema``, each as ``path: message``."""
    validator = jsonschema.Draft4Validator(schema)
    found = sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_path(e.absolute_path)}: {e.message}" for e in found]


def admission_errors(service: Mapping[str, Any]) -> list[str]:
    """The Knative webhook's checks that the CRD schema lacks, for a whole Service."""
    errors: list[str] = []
    name = str(service.get("metadata", {}).get("name", ""))
    if not _DNS1035.match(name) or len(name) > 63:
        errors.append(f"metadata.name: {name!r} must be a DNS label (a-z, 0-9, '-'; starting with a letter; <= 63)")
    template = service.get("spec", {}).get("template", {})
    errors += _annotation_errors(
        template.get("metadata", {}).get("annotations", {}), "spec.template.metadata.annotations"
    )
    spec = template.get("spec", {})
    errors += pod_errors(spec, "spec.template.spec")
    concurrency = spec.get("containerConcurrency")
    target = _number(template.get("metadata", {}).get("annotations", {}).get(_AUTOSCALING + "target"))
    if concurrency and target is not None and target > concurrency:
        errors.append(f"autoscaling target {target:g} exceeds containerConcurrency {concurrency}")
    return errors


def pod_errors(spec: Mapping[str, Any], where: str) -> list[str]:
    """Checks on a revision's pod spec: one serving container, its port, env, probes, limits."""
    errors: list[str] = []
    containers = spec.get("containers", [])
    if len(containers) != 1:
        errors.append(f"{where}.containers: exactly one container is deployed here, got {len(containers)}")
    for index, container in enumerate(containers):
        errors += container_errors(container, f"{where}.containers[{index}]")
    concurrency = spec.get("containerConcurrency")
    if concurrency is not None and not 0 <= concurrency <= MAX_CONTAINER_CONCURRENCY:
        errors.append(f"{where}.containerConcurrency: {concurrency} is not within 0..{MAX_CONTAINER_CONCURRENCY}")
    timeout = spec.get("timeoutSeconds")
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        errors.append(
            f"{where}.timeoutSeconds: {timeout} is not within 1..{MAX_TIMEOUT_SECONDS} (Knative's default maximum)"
        )
    return errors


def container_errors(container: Mapping[str, Any], where: str) -> list[str]:
    """The serving container's rules: name, a single port, reserved ports and env, probe handlers."""
    errors: list[str] = []
    if container.get("name") in RESERVED_CONTAINER_NAMES:
        errors.append(f"{where}.name: {container['name']!r} is reserved by Knative")
    ports = container.get("ports", [])
    if len(ports) > 1:
        errors.append(f"{where}.ports: Knative routes to one port only, got {len(ports)}")
    serving_port = 8080
    for index, port in enumerate(ports):
        at = f"{where}.ports[{index}]"
        name = port.get("name", "")
        if name not in PORT_NAMES:
            errors.append(f"{at}.name: {name!r} must be empty, 'http1' or 'h2c'")
        number = port.get("containerPort")
        if not isinstance(number, int) or not 0 < number < 65536:
            errors.append(f"{at}.containerPort: {number!r} is not a TCP port (1..65535)")
        elif number in RESERVED_PORTS:
            errors.append(
                f"{at}.containerPort: {number} is reserved by Knative ({', '.join(map(str, sorted(RESERVED_PORTS)))})"
            )
        if port.get("protocol", "TCP") != "TCP":
            errors.append(f"{at}.protocol: only TCP is supported, got {port.get('protocol')!r}")
        if port.get("hostPort") or port.get("hostIP"):
            errors.append(f"{at}: hostPort and hostIP are not allowed")
        if index == 0 and isinstance(number, int):
            serving_port = number
    for index, env in enumerate(container.get("env", [])):
        if env.get("name") in RESERVED_ENV:
            errors.append(f"{where}.env[{index}].name: {env['name']!r} is set by Knative and must not be given")
    for probe_name in _PROBES:
        probe = container.get(probe_name)
        if probe is not None:
            errors += _probe_errors(probe, serving_port, f"{where}.{probe_name}")
    return errors


def _probe_errors(probe: Mapping[str, Any], serving_port: int, where: str) -> list[str]:
    handlers = [h for h in _HANDLERS if h in probe]
    if len(handlers) != 1:
        return [f"{where}: needs exactly one handler, got {handlers or 'none'}"]
    handler = handlers[0]
    if handler not in ("httpGet", "tcpSocket"):
        return [f"{where}: only httpGet and tcpSocket probes are used with Knative here, got {handler}"]
    port = probe[handler].get("port")
    if port is not None and port != serving_port:
        return [f"{where}.{handler}.port: {port} must be the serving port {serving_port} (or left out)"]
    return []


def _annotation_errors(annotations: Mapping[str, str], where: str) -> list[str]:
    errors: list[str] = []
    scales: dict[str, float] = {}
    for key in ("min-scale", "max-scale", "initial-scale"):
        value = annotations.get(_AUTOSCALING + key)
        if value is None:
            continue
        number = _number(value)
        if number is None or number < 0 or number != int(number):
            errors.append(f"{where}[{_AUTOSCALING}{key}]: {value!r} must be a whole number >= 0")
        else:
            scales[key] = number
    low, high = scales.get("min-scale", 0), scales.get("max-scale", 0)
    if high and low > high:
        errors.append(f"{where}: min-scale {low:g} exceeds max-scale {high:g}")
    target = annotations.get(_AUTOSCALING + "target")
    if target is not None and ((_number(target) or 0) < 0.01):
        errors.append(f"{where}[{_AUTOSCALING}target]: {target!r} must be a number >= 0.01")
    return errors


def validate_service(manifest: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`ConfigurationError` listing every schema and admission error of a Service."""
    problems = schema_errors(manifest, schema if schema is not None else load_schema())
    problems += admission_errors(manifest)
    if problems:
        raise ConfigurationError("invalid Knative Service:\n  " + "\n  ".join(problems))


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _path(parts: Iterator[Any] | Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(root)"
