"""CloudWatch metrics of every inference request, as embedded metric format (EMF) log lines.

A Lambda function has no port to scrape: CloudWatch Logs extracts metrics from log lines that
carry an ``_aws`` object, in AWS's "Embedded metric format specification" (CloudWatch User
Guide). The handler writes one such line to stdout per inference request it answered, after the
answer: the metrics ``Requests``, ``Errors`` and ``ColdStarts`` (Count) and ``Duration``
(Milliseconds), by the dimensions ``model, version`` and ``model, version, outcome``; the line's
other keys (``protocol``, ``error``, ``cold_start``, ``request_id``, ``function``) are searchable in
Logs Insights but are not dimensions, so they add no metric series.

``OMI_EMF_NAMESPACE`` sets the namespace (default ``omi-adapters``); ``OMI_EMF=off`` writes none.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

import orjson

from omi_adapters.contract import Model
from omi_adapters.dataplane import Observer
from omi_adapters.errors import ErrorCode

__all__ = ["DEFAULT_NAMESPACE", "EmfRecorder"]

DEFAULT_NAMESPACE = "omi-adapters"
_DIMENSIONS = [["model", "version"], ["model", "version", "outcome"]]
_METRICS = [
    {"Name": "Requests", "Unit": "Count"},
    {"Name": "Errors", "Unit": "Count"},
    {"Name": "ColdStarts", "Unit": "Count"},
    {"Name": "Duration", "Unit": "Milliseconds"},
]


class EmfRecorder(Observer):
    """Keeps the requests answered during one invocation; :meth:`write` logs them as EMF lines.

    Args:
        namespace: the CloudWatch namespace of the metrics.
        stream: where the lines go (stdout, which Lambda sends to CloudWatch Logs).
    """

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, stream: IO[str] | None = None) -> None:
        self.namespace = namespace
        self.stream = stream
        self.requests: list[tuple[str, Model | None, str, ErrorCode | None, float]] = []

    @classmethod
    def from_env(cls) -> EmfRecorder | None:
        """The recorder ``OMI_EMF`` and ``OMI_EMF_NAMESPACE`` ask for; None when turned off."""
        if os.environ.get("OMI_EMF", "on").strip().lower() in ("off", "0", "false", "no"):
            return None
        return cls(os.environ.get("OMI_EMF_NAMESPACE") or DEFAULT_NAMESPACE)

    def request(
        self,
        protocol: str,
        model: Model | None,
        outcome: str,
        error: ErrorCode | None,
        seconds: float,
        nbytes_in: int,
        nbytes_out: int,
    ) -> None:
        self.requests.append((protocol, model, outcome, error, seconds))

    def write(self, cold: bool, request_id: str | None, function: str | None) -> None:
        """Write one line per request recorded since the last call, and forget them."""
        if not self.requests:
            return
        stream = self.stream or sys.stdout
        now = int(time.time() * 1000)
        for protocol, model, outcome, error, seconds in self.requests:
            line = {
                "_aws": {
                    "Timestamp": now,
                    "CloudWatchMetrics": [
                        {"Namespace": self.namespace, "Dimensions": _DIMENSIONS, "Metrics": _METRICS}
                    ],
                },
                "model": model.name if model is not None else "",
                "version": model.version if model is not None else "",
                "outcome": outcome,
                "protocol": protocol,
                "error": error.name if error is not None else None,
                "cold_start": cold,
                "request_id": request_id,
                "function": function,
                "Requests": 1,
                "Errors": 0 if error is None else 1,
                "ColdStarts": 1 if cold else 0,
                "Duration": round(seconds * 1000, 3),
            }
            stream.write(orjson.dumps(line).decode() + "\n")
        stream.flush()
        self.requests.clear()


def invocation_ids(context: Any) -> tuple[str | None, str | None]:
    """The invocation's request id and function name, from the Lambda context."""
    request_id = getattr(context, "aws_request_id", None)
    function = getattr(context, "function_name", None)
    return (request_id if isinstance(request_id, str) else None, function if isinstance(function, str) else None)
