"""Triton's statistics extension, read from the Prometheus metrics (:mod:`omi_adapters.metrics`).

``GET /v2/models/stats``, ``GET /v2/models/{m}[/versions/{v}]/stats`` and gRPC ``ModelStatistics``
answer in Triton's shape, so that ``tritonclient``'s ``get_inference_statistics`` works. The
figures are the metrics' own series, summed over protocols (and, with ``--workers``, over
workers); nothing else counts them:

==========================  ====================================================================
Triton field                metric
==========================  ====================================================================
``success`` / ``fail``      ``omi_request_duration_seconds{result="success"|"failure"}`` count, sum
``queue``                   ``omi_queue_duration_seconds`` count, sum
``compute_infer``           ``omi_predict_duration_seconds`` count, sum
``inference_count``         ``omi_batch_size`` sum (rows predicted)
``execution_count``         ``omi_batch_size`` count (predict calls)
``last_inference``          ``omi_model_last_request_timestamp_seconds``, in milliseconds
==========================  ====================================================================

``compute_input`` and ``compute_output`` (decoding and encoding) are not measured apart from the
request, and are reported as zero, as are the cache and per-batch-size figures.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from omi_adapters.dataplane import DataPlane
from omi_adapters.metrics import Metrics

__all__ = ["model_statistics"]

_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")
_WANTED = {
    "omi_request_duration_seconds",
    "omi_queue_duration_seconds",
    "omi_predict_duration_seconds",
    "omi_batch_size",
    "omi_model_last_request_timestamp_seconds",
}


def model_statistics(
    dataplane: DataPlane, metrics: Metrics, name: str | None = None, version: str | None = None
) -> list[dict[str, Any]]:
    """The ``model_stats`` of Triton's reply: every model, every version of ``name``, or one version.

    Raises :class:`~omi_adapters.errors.ModelNotFoundError` for a model or version not served.
    """
    if name:
        if version:
            models = [dataplane.get(name, version)]
        else:
            dataplane.get(name)
            models = [m for m in dataplane.models if m.name == name]
    else:
        models = dataplane.models
    metrics.refresh(dataplane)
    sums: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in metrics.collect_registry().collect():
        if family.name not in _WANTED:
            continue
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("model", ""), labels.get("version", ""))
            if sample.name.endswith("_bucket"):
                continue
            result = labels.get("result")
            field = f"{sample.name}:{result}" if result else sample.name
            if sample.name == "omi_model_last_request_timestamp_seconds":
                sums[key][field] = max(sums[key][field], sample.value)
            else:
                sums[key][field] += sample.value
    return [_model(m.name, m.version, sums[m.name, m.version]) for m in models]


def _model(name: str, version: str, values: dict[str, float]) -> dict[str, Any]:
    def duration(metric: str) -> dict[str, int]:
        return {"count": round(values[f"{metric}_count"]), "ns": round(values[f"{metric}_sum"] * 1e9)}

    request = "omi_request_duration_seconds"
    stats = {field: {"count": 0, "ns": 0} for field in _DURATIONS}
    stats["success"] = {
        "count": round(values[f"{request}_count:success"]),
        "ns": round(values[f"{request}_sum:success"] * 1e9),
    }
    stats["fail"] = {
        "count": round(values[f"{request}_count:failure"]),
        "ns": round(values[f"{request}_sum:failure"] * 1e9),
    }
    stats["queue"] = duration("omi_queue_duration_seconds")
    stats["compute_infer"] = duration("omi_predict_duration_seconds")
    return {
        "name": name,
        "version": version,
        "last_inference": round(values["omi_model_last_request_timestamp_seconds"] * 1000),
        "inference_count": round(values["omi_batch_size_sum"]),
        "execution_count": round(values["omi_batch_size_count"]),
        "inference_stats": stats,
        "response_stats": {},
        "batch_stats": [],
        "memory_usage": [],
    }
