"""Prometheus metrics of every protocol, from the one place that sees every request: the DataPlane.

:class:`Metrics` is an :class:`~omi_adapters.dataplane.Observer`: the DataPlane calls the hooks it
binds per model (in flight, queued, wait, predict, batch rows) and each front end reports the
request it answered (outcome, error, duration, bytes). Every series of a served model is created
when the server starts, so the hot path only calls ``inc``/``observe`` on pre-bound children.

The scheme (README, "Metrics and logs"): every name starts with ``omi_``; labels are ``model``,
``version``, ``protocol`` (``rest``, ``grpc``, ``omi``), ``outcome`` (the protocol's own answer:
the HTTP status, the gRPC code name, ``success``/``failure`` for an OMI item), ``error`` (the
transport-neutral :class:`~omi_adapters.errors.ErrorCode` name) and ``result``
(``success``/``failure``). A request for a model that is not served has ``model=""``.

The hot path does plain arithmetic: each series keeps its count (or its histogram's bucket
counts and sum) as Python numbers, updated on the event loop only, and :meth:`Metrics.flush` adds
them to the prometheus-client metrics at every scrape and every second (``omi serve`` does). An
``inc``/``observe`` of prometheus-client takes its lock and costs 1 to 2.5 microseconds; a dozen
of them per request would cost more than the rest of a small request's serving.

With ``--workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before starting the workers;
each worker writes its values there and a scrape of any one of them reports the totals of all
(prometheus-client's multiprocess mode); another worker's values are at most a second old.

This module imports prometheus-client: the front ends import it, ``import omi_adapters`` does not.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import multiprocess as _multiprocess

from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane, Observer
from omi_adapters.errors import ErrorCode
from omi_adapters.limits import ModelHooks
from omi_adapters.loading import LoadState

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "MULTIPROC_ENV",
    "PROTOCOLS",
    "Metrics",
]

#: Seconds: from a millisecond to ten minutes (a request's deadline can be minutes).
DEFAULT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
#: Rows of one predict call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Loads take seconds to many minutes.
LOAD_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
PROTOCOLS = ("rest", "grpc", "omi")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATES = tuple(s.value for s in LoadState)
_MODEL = ("model", "version")

# The ``*_created`` series double a scrape's size and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def multiprocess() -> bool:
    """Values go to ``$PROMETHEUS_MULTIPROC_DIR`` (a worker of ``--workers``)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class _Count:
    """A counter's increments since the last flush."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n: float = 0

    def add(self, n: float) -> None:
        self.n += n

    def flush(self) -> None:
        n = self.n
        if n:
            self.n = 0
            self.child.inc(n)


class _Level:
    """A gauge's value, set on the prometheus-client gauge when it changed."""

    __slots__ = ("child", "n", "shown")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n: float = 0
        self.shown: float | None = None

    def add(self, n: float) -> None:
        self.n += n

    def sub(self, n: float) -> None:
        self.n -= n

    def flush(self) -> None:
        if self.n != self.shown:
            self.shown = self.n
            self.child.set(self.n)


class _Hist:
    """A histogram's observations since the last flush: counts per bucket, then their sum.

    ``observe`` is a closure over local names: the cheapest call Python has.
    """

    __slots__ = ("child", "counts", "observe")

    def __init__(self, child: Any) -> None:
        self.child = child
        bounds = tuple(child._upper_bounds)  # ends with +Inf
        counts: list[float] = [0] * (len(bounds) + 1)  # the last one is the sum
        self.counts = counts

        def observe(value: float, _at: Any = bisect.bisect_left, _bounds: Any = bounds, _counts: Any = counts) -> None:
            _counts[_at(_bounds, value)] += 1
            _counts[-1] += value

        self.observe: Callable[[float], None] = observe

    def flush(self) -> None:
        # prometheus-client keeps a histogram as one value per bucket (not cumulative) and a sum.
        counts, child = self.counts, self.child
        for index in range(len(counts) - 1):
            n = counts[index]
            if n:
                counts[index] = 0
                child._buckets[index].inc(n)
        total = counts[-1]
        if total:
            counts[-1] = 0
            child._sum.inc(total)


class _Series:
    """The pre-bound series of one model (or of no model) on one protocol."""

    __slots__ = ("bytes_in", "bytes_out", "errors", "failure", "labels", "metrics", "outcomes", "success")

    def __init__(self, metrics: Metrics, model: str, version: str, protocol: str) -> None:
        self.metrics = metrics
        self.labels = (model, version, protocol)
        self.outcomes: dict[str, _Count] = {}
        self.errors: dict[ErrorCode, _Count] = {}
        self.success = metrics.kept(_Hist(metrics.duration.labels(model, version, protocol, "success")))
        self.failure = metrics.kept(_Hist(metrics.duration.labels(model, version, protocol, "failure")))
        self.bytes_in = metrics.kept(_Count(metrics.request_bytes.labels(model, version, protocol)))
        self.bytes_out = metrics.kept(_Count(metrics.response_bytes.labels(model, version, protocol)))

    def outcome(self, label: str) -> _Count:
        count = self.outcomes.get(label)
        if count is None:
            count = self.outcomes[label] = self.metrics.kept(_Count(self.metrics.requests.labels(*self.labels, label)))
        return count

    def error(self, code: ErrorCode) -> _Count:
        count = self.errors.get(code)
        if count is None:
            count = self.errors[code] = self.metrics.kept(_Count(self.metrics.errors.labels(*self.labels, code.name)))
        return count


class Metrics(Observer):
    """Prometheus series of the served models; an :class:`Observer` for :class:`DataPlane`.

    Args:
        models: the served models (their series exist, at zero, from the start).
        buckets: the latency histograms' buckets in seconds (``--metrics-buckets``).
        outcomes: per protocol, the outcome labels to create at zero (the success one first).
    """

    def __init__(
        self,
        models: Sequence[Model],
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        outcomes: dict[str, Sequence[str]] | None = None,
    ) -> None:
        self.multiprocess = multiprocess()
        # Values of a worker go to the shared directory; this registry is only for one process.
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        labels = (*_MODEL, "protocol")
        self.requests = Counter(
            "omi_requests", "Inference requests answered (an OMI item is one), by the protocol's outcome.",
            (*labels, "outcome"), registry=reg,
        )  # fmt: skip
        self.errors = Counter(
            "omi_request_errors", "Inference requests that failed, by the error's transport-neutral code.",
            (*labels, "error"), registry=reg,
        )  # fmt: skip
        self.duration = Histogram(
            "omi_request_duration_seconds", "Whole inference requests, from arrival to the answer.",
            (*labels, "result"), buckets=buckets, registry=reg,
        )  # fmt: skip
        self.request_bytes = Counter(
            "omi_request_bytes", "Bytes of inference requests (REST body, gRPC message, OMI item).", labels,
            registry=reg,
        )  # fmt: skip
        self.response_bytes = Counter(
            "omi_response_bytes", "Bytes of inference replies (REST body, gRPC message, OMI item).", labels,
            registry=reg,
        )  # fmt: skip
        self.queue = Histogram(
            "omi_queue_duration_seconds", "Time a request waited for a predict slot or for its batch.", _MODEL,
            buckets=buckets, registry=reg,
        )  # fmt: skip
        self.predict = Histogram(
            "omi_predict_duration_seconds", "Calls of the model's predict (one per batch).", _MODEL,
            buckets=buckets, registry=reg,
        )  # fmt: skip
        self.batch = Histogram(
            "omi_batch_size", "Rows of each predict call (1 for a model that does not batch).", _MODEL,
            buckets=BATCH_BUCKETS, registry=reg,
        )  # fmt: skip
        self.inflight = Gauge(
            "omi_requests_in_flight", "Inference requests being served.", _MODEL, registry=reg,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.queued = Gauge(
            "omi_requests_queued", "Inference requests waiting for a predict slot or a batch.", _MODEL,
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.state = Gauge(
            "omi_model_state", "1 for the model's current load state (with --workers: how many workers are in it).",
            (*_MODEL, "state"), registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.load = Histogram(
            "omi_model_load_duration_seconds", "Loads of the model, finished or failed.", (*_MODEL, "result"),
            buckets=LOAD_BUCKETS, registry=reg,
        )  # fmt: skip
        self.load_failures = Counter("omi_model_load_failures", "Loads of the model that failed.", _MODEL, registry=reg)
        self.cold_start = Gauge(
            "omi_cold_start_seconds", "Seconds from the process's start to every model ready (the slowest worker).",
            registry=reg, multiprocess_mode="max",
        )  # fmt: skip
        self.last = Gauge(
            "omi_model_last_request_timestamp_seconds", "Unix time of the model's last answered request.", _MODEL,
            registry=reg, multiprocess_mode="max",
        )  # fmt: skip
        self._kept: list[_Count | _Level | _Hist] = []
        self._series: dict[Model | None, dict[str, _Series]] = {}
        self._last: dict[Model, Any] = {}
        self._stamps: dict[Model, float] = {}
        #: The state and load count last recorded: a reload or a retried load changes the count.
        self._seen: dict[Model, tuple[LoadState, int]] = {}
        self._cold = False
        outcomes = outcomes or {}
        for model in models:
            self._series[model] = {p: _Series(self, model.name, model.version, p) for p in PROTOCOLS}
            self._last[model] = self.last.labels(model.name, model.version)
            for state in _STATES:
                self.state.labels(model.name, model.version, state)
            self.load_failures.labels(model.name, model.version)
            for protocol, labels_ in outcomes.items():
                series = self._series[model][protocol]
                for label in labels_:
                    series.outcome(label)
        self._none = self._series[None] = {p: _Series(self, "", "", p) for p in PROTOCOLS}

    def kept(self, value: Any) -> Any:
        """Keep ``value`` (an accumulator) among those that :meth:`flush` writes out."""
        self._kept.append(value)
        return value

    # --- the Observer hooks ----------------------------------------------------------------------

    def hooks(self, model: Model) -> ModelHooks:
        hooks = ModelHooks()
        names = (model.name, model.version)
        inflight = self.kept(_Level(self.inflight.labels(*names)))
        queued = self.kept(_Level(self.queued.labels(*names)))
        hooks.enter, hooks.leave = inflight.add, inflight.sub
        hooks.queue, hooks.dequeue = queued.add, queued.sub
        hooks.waited = self.kept(_Hist(self.queue.labels(*names))).observe
        predict = self.kept(_Hist(self.predict.labels(*names)))
        batch = self.kept(_Hist(self.batch.labels(*names)))

        def predicted(
            seconds: float,
            rows: int,
            _at: Any = bisect.bisect_left,
            _times: Any = predict.counts,
            _bounds: Any = tuple(predict.child._upper_bounds),
            _rows: Any = batch.counts,
            _sizes: Any = tuple(batch.child._upper_bounds),
        ) -> None:
            _times[_at(_bounds, seconds)] += 1
            _times[-1] += seconds
            _rows[_at(_sizes, rows)] += 1
            _rows[-1] += rows

        hooks.predicted = predicted
        return hooks

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
        series = (self._series.get(model) or self._none)[protocol]
        count = series.outcomes.get(outcome) or series.outcome(outcome)
        count.n += 1
        if error is None:
            series.success.observe(seconds)
        else:
            series.failure.observe(seconds)
            (series.errors.get(error) or series.error(error)).n += 1
        series.bytes_in.n += nbytes_in
        series.bytes_out.n += nbytes_out
        if model is not None:
            self._stamps[model] = time.time()

    def flush(self) -> None:
        """Add what the hot path counted since the last flush to the prometheus-client metrics.

        Call it on the event loop (where the hooks run): ``omi serve`` does, every second and
        before every scrape.
        """
        for value in self._kept:
            value.flush()
        stamps, self._stamps = self._stamps, {}
        for model, stamp in stamps.items():
            self._last[model].set(stamp)

    def refresh(self, dataplane: DataPlane) -> None:
        """Record the models' states, each finished load once, and the cold start once; flush."""
        self.flush()
        for model in dataplane.models:
            state = model.state
            seen = (state, model.load_count)
            before = self._seen.get(model)
            if seen == before:
                continue
            self._seen[model] = seen
            for name in _STATES:
                self.state.labels(model.name, model.version, name).set(1 if name == state.value else 0)
            seconds = model.load_seconds
            loaded = before is None or before[1] != seen[1]
            if seconds is not None and loaded and state in (LoadState.READY, LoadState.FAILED):
                result = "success" if state is LoadState.READY else "failure"
                self.load.labels(model.name, model.version, result).observe(seconds)
                if state is LoadState.FAILED:
                    self.load_failures.labels(model.name, model.version).inc()
        if not self._cold and all(m.ready for m in dataplane.models):
            self._cold = True
            self.cold_start.set(process_age())

    # --- scraping ---------------------------------------------------------------------------------

    def collect_registry(self) -> CollectorRegistry:
        """The registry a scrape reads: this process's, or every worker's in multiprocess mode."""
        if not self.multiprocess:
            return self.registry
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry

    def exposition(self) -> bytes:
        """The text format of a ``GET /metrics``."""
        return generate_latest(self.collect_registry())


def process_age() -> float:
    """Seconds since this process started (from /proc on Linux, else since this module loaded)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _LOADED


_LOADED = time.monotonic()


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the multiprocess directory (counters stay counted)."""
    if multiprocess():
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
