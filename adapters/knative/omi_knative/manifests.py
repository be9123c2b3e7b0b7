"""The Knative Service and KServe InferenceService of a set of models, built as plain data.

Both run the same image (the Containerfile of :mod:`omi_knative.containerfile`) on one port,
as Knative allows (its runtime contract: one container port, named by protocol): ``http1`` for OIP REST, ``h2c`` for OIP gRPC.
Resources, the startup budget and the request timeout come from the models' OMI metadata
(OMI's ``ModelResources`` and ``ModelTimeout``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError
from omi_adapters.metadata import parse_duration, parse_size

__all__ = [
    "PROTOCOL_PORT_NAMES",
    "Deployment",
    "inference_service",
    "knative_service",
    "serve_limits",
    "service_name",
]

#: The port name tells Knative's queue-proxy which protocol the container speaks.
PROTOCOL_PORT_NAMES = {"rest": "http1", "grpc": "h2c"}
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
#: A stalled model turns liveness false after --stall-timeout; the kubelet restarts the container
#: after this many failed probes, this many seconds apart.
LIVENESS_PERIOD_SECONDS = 10
LIVENESS_FAILURES = 3
#: Of the pod's memory limit, the share that requests in flight may hold: decoding takes about
#: 3x the body, the outputs and their encoding about as much again, the rest is the process.
INFLIGHT_MEMORY_SHARE = 8
MAX_MESSAGE_BYTES = 64 * 2**20
#: How often the startup probe asks; its failure threshold covers the declared load time.
STARTUP_PERIOD_SECONDS = 2
#: Added to the declared load time: interpreter start and imports come before the model's load.
STARTUP_MARGIN_SECONDS = 30
#: Added to the declared run timeout for the request timeout (queueing, transfer).
REQUEST_MARGIN_SECONDS = 10
#: Knative's default progress-deadline (config-deployment): a revision that is not ready by then
#: fails, whatever its startup probe still allows.
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
#: What the progress deadline must cover besides the startup probe: scheduling, pulling the image.
PULL_MARGIN_SECONDS = 300


@dataclass(frozen=True)
class Deployment:
    """What ``omi build knative`` was told besides the models."""

    name: str
    image: str
    protocol: str = "rest"
    port: int = 8080
    concurrency: int = 10
    target: float | None = None
    min_scale: int = 0
    max_scale: int = 10
    env: Sequence[tuple[str, str]] = field(default_factory=tuple)
    #: ``omi serve --workers``: processes in the container, each with its own copy of the models.
    workers: int = 1

    def __post_init__(self) -> None:
        if type(self.workers) is not int or self.workers < 1:
            raise ConfigurationError(f"workers must be at least 1, got {self.workers!r}")
        if self.protocol not in PROTOCOL_PORT_NAMES:
            raise ConfigurationError(f"protocol must be 'rest' or 'grpc', got {self.protocol!r}")
        if not self.image:
            raise ConfigurationError("an image is needed (--image)")


def service_name(models: Sequence[Model]) -> str:
    """A DNS label made from the first model's name (``my_Model.v2`` -> ``my-model-v2``)."""
    name = re.sub(r"[^a-z0-9-]+", "-", models[0].name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"model-{name}".strip("-")
    return name[:63].rstrip("-")


def knative_service(models: Sequence[Model], deployment: Deployment) -> dict[str, Any]:
    """A ``serving.knative.dev/v1`` Service running the image."""
    annotations = {
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/target": _format_number(_target(deployment)),
        "autoscaling.knative.dev/min-scale": str(deployment.min_scale),
        "autoscaling.knative.dev/max-scale": str(deployment.max_scale),
        **_progress_deadline(models),
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": deployment.name, "labels": _labels(models)},
        "spec": {
            "template": {
                "metadata": {"labels": _labels(models), "annotations": annotations},
                "spec": {
                    "containerConcurrency": deployment.concurrency,
                    "timeoutSeconds": request_timeout(models),
                    "containers": [_container(models, deployment, name="omi-model")],
                },
            }
        },
    }


def inference_service(models: Sequence[Model], deployment: Deployment) -> dict[str, Any]:
    """A ``serving.kserve.io/v1beta1`` InferenceService whose custom predictor runs the image.

    KServe's serverless mode turns the predictor into a Knative Service, so the same pod rules
    hold; ``PROTOCOL=v2`` tells KServe-aware tooling (and OMI's container spec) which protocol
    the container speaks.
    """
    container = _container(models, deployment, name="kserve-container")
    container["env"] = [*container.get("env", []), {"name": "PROTOCOL", "value": "v2"}]
    predictor: dict[str, Any] = {
        "minReplicas": deployment.min_scale,
        "maxReplicas": deployment.max_scale,
        "scaleMetric": "concurrency",
        "scaleTarget": max(1, round(_target(deployment))),
        "containerConcurrency": deployment.concurrency,
        "timeout": request_timeout(models),
        "containers": [container],
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": deployment.name,
            "labels": _labels(models),
            # KServe copies these onto the Knative revision it makes of the predictor.
            "annotations": {"serving.kserve.io/deploymentMode": "Serverless", **_progress_deadline(models)},
        },
        "spec": {"predictor": predictor},
    }


def _container(models: Sequence[Model], deployment: Deployment, *, name: str) -> dict[str, Any]:
    port_name = PROTOCOL_PORT_NAMES[deployment.protocol]
    container: dict[str, Any] = {
        "name": name,
        "image": deployment.image,
        "ports": [{"name": port_name, "containerPort": deployment.port, "protocol": "TCP"}],
        "resources": resources(models, deployment.workers),
        "readinessProbe": _probe(deployment, period=None),
        "livenessProbe": {
            **_probe(deployment, period=LIVENESS_PERIOD_SECONDS, path=LIVE_PATH),
            "failureThreshold": LIVENESS_FAILURES,
        },
        "startupProbe": {
            **_probe(deployment, period=STARTUP_PERIOD_SECONDS),
            "failureThreshold": _startup_failures(models),
        },
    }
    if deployment.env:
        container["env"] = [{"name": key, "value": value} for key, value in deployment.env]
    return container


def _startup_failures(models: Sequence[Model]) -> int:
    return math.ceil((load_seconds(models) + STARTUP_MARGIN_SECONDS) / STARTUP_PERIOD_SECONDS)


def _progress_deadline(models: Sequence[Model]) -> dict[str, str]:
    # Knative fails a revision at its progress deadline even while the startup probe may still
    # pass; raise the deadline only where the default would cut a slow model's load short.
    needed = _startup_failures(models) * STARTUP_PERIOD_SECONDS + PULL_MARGIN_SECONDS
    if needed <= DEFAULT_PROGRESS_DEADLINE_SECONDS:
        return {}
    return {"serving.knative.dev/progress-deadline": f"{needed}s"}


def _probe(deployment: Deployment, period: int | None, path: str = READY_PATH) -> dict[str, Any]:
    # REST answers readiness on the OIP path (503 until every model is loaded; asking starts a
    # lazy load). Over h2c the queue-proxy's HTTP/1 probe would not be understood: TCP it is.
    if deployment.protocol == "rest":
        probe: dict[str, Any] = {"httpGet": {"path": path, "port": deployment.port}}
    else:
        probe = {"tcpSocket": {"port": deployment.port}}
    if period is not None:
        probe["periodSeconds"] = period
    return probe


def resources(models: Sequence[Model], workers: int = 1) -> dict[str, Any]:
    """Requests (and the memory and GPU limits) summed over the models' OMI ``resources``.

    Each of ``workers`` processes loads every model: memory and CPU are needed that many times
    (GPUs are shared by the workers, not multiplied).
    """
    ram = workers * _ram(models)
    cpus = workers * sum(m.metadata.resources.num_cpus for m in models)
    gpus = sum(m.metadata.resources.num_gpus for m in models)
    memory = _memory_quantity(ram)
    out: dict[str, Any] = {"requests": {"cpu": _cpu_quantity(cpus), "memory": memory}, "limits": {"memory": memory}}
    if gpus:
        out["limits"]["nvidia.com/gpu"] = str(gpus)
    return out


def serve_limits(models: Sequence[Model], workers: int = 1) -> list[str]:
    """``omi serve`` flags that keep each process inside its share of the pod's memory, and its deadline.

    The bytes requests in flight may hold in one process are an eighth of the memory the models
    declare (each worker's share of the limit :func:`resources` sets). A message is at most a
    quarter of that: numeric JSON decodes in under its own size again, but a JSON body the fast
    decoder cannot take (BYTES, malformed) is parsed whole, into Python objects of up to ~16x its
    size. The server's request timeout is the longest declared run timeout, as the Knative
    request timeout is.
    """
    inflight = max(2**20, _ram(models) // INFLIGHT_MEMORY_SHARE)
    run = max(parse_duration(m.metadata.timeouts.run, f"model '{m.name}' timeouts.run") for m in models)
    flags = [
        "--max-inflight-bytes", str(inflight),
        "--max-message-bytes", str(min(MAX_MESSAGE_BYTES, inflight // 4)),
        "--request-timeout", _format_number(max(1.0, run)),
    ]  # fmt: skip
    return [*flags, "--workers", str(workers)] if workers > 1 else flags


def _ram(models: Sequence[Model]) -> int:
    return sum(
        parse_size(m.metadata.resources.required_ram, f"model '{m.name}' resources.required_ram") for m in models
    )


def load_seconds(models: Sequence[Model]) -> float:
    """The declared load times (OMI ``timeouts.status``) added up: eager models load one by one."""
    return sum(parse_duration(m.metadata.timeouts.status, f"model '{m.name}' timeouts.status") for m in models)


def request_timeout(models: Sequence[Model]) -> int:
    """Seconds a request may take: the longest declared run timeout plus a margin."""
    run = max(parse_duration(m.metadata.timeouts.run, f"model '{m.name}' timeouts.run") for m in models)
    return math.ceil(run) + REQUEST_MARGIN_SECONDS


def _target(deployment: Deployment) -> float:
    # Without a target, aim at the container's own limit (Knative then keeps 70% of it as its
    # utilization target); with no limit, Knative's default of 100.
    if deployment.target is not None:
        return deployment.target
    return float(deployment.concurrency or 100)


def _labels(models: Sequence[Model]) -> dict[str, str]:
    first = models[0]
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", first.name)[:63].strip("-_.")
    version = re.sub(r"[^A-Za-z0-9_.-]", "-", first.version)[:63].strip("-_.")
    return {
        "app.kubernetes.io/name": value,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/managed-by": "omi-adapters",
    }


def _memory_quantity(size: int) -> str:
    for unit, factor in (("Gi", 2**30), ("Mi", 2**20), ("G", 10**9), ("M", 10**6), ("Ki", 2**10), ("k", 10**3)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _cpu_quantity(cpus: float) -> str:
    millis = math.ceil(cpus * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
