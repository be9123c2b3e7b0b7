"""OpenTelemetry traces of every inference request, when the OpenTelemetry SDK is installed and configured.

Each request gets a server span (``omi.model``, ``omi.model_version``, ``omi.protocol``,
``omi.outcome``, and the HTTP or RPC attributes of OpenTelemetry's semantic conventions), with
child spans ``decode``, ``queue``, ``predict`` and ``encode``. The incoming W3C ``traceparent``
(and ``tracestate``, ``baggage``) of HTTP headers and gRPC metadata is its parent, through the
propagators the SDK is configured with (``OTEL_PROPAGATORS``, W3C trace context by default).

Tracing is on when either:

- the process already has an SDK tracer provider (``opentelemetry-instrument omi serve ...``, or
  an application that set one before serving), or
- the OpenTelemetry SDK is installed and the environment names an exporter the way the SDK's own
  configuration reads it: ``OTEL_TRACES_EXPORTER`` (``console``, ``otlp``, ... each an installed
  exporter's entry point), or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, exporter ``otlp``). The resource and sampler come from
  the SDK's own variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER``); ``OTEL_SDK_DISABLED=true`` turns it off.

Otherwise nothing of OpenTelemetry is imported, and the cost on the hot path is one test of
:data:`active` per request. The spans' times are taken where the DataPlane already takes them
(``time.perf_counter``), so tracing adds no clock reads of its own between them.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from omi_adapters import __version__
from omi_adapters.errors import ConfigurationError, ErrorCode

__all__ = ["Request", "active", "configure", "current", "shutdown", "start", "start_rpc"]

log = logging.getLogger("omi_adapters.tracing")

#: True once :func:`configure` found a tracer provider; front ends test it before anything else.
active = False
_tracer: Any = None
_provider: Any = None  # the provider this module created (to flush at shutdown), if any
_api: Any = None  # the opentelemetry modules used per request, imported by configure()
#: The server span of the request being served, for the DataPlane's child spans.
_current: contextvars.ContextVar[Request | None] = contextvars.ContextVar("omi_trace", default=None)
#: ``time.perf_counter()`` seconds to Unix nanoseconds (the clock OpenTelemetry's spans use).
_EPOCH_NS = 0
#: The only headers propagation reads (W3C trace context and baggage).
_HEADERS = frozenset((b"traceparent", b"tracestate", b"baggage"))


def _enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    names = environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    return [n.strip() for n in names.split(",") if n.strip() and n.strip().lower() != "none"]


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if the SDK is installed and configured (see the module's docstring); True if on.

    Raises :class:`ConfigurationError` when ``OTEL_TRACES_EXPORTER`` names an exporter that is
    not installed.
    """
    global active, _tracer, _provider, _api, _EPOCH_NS
    environ = os.environ if environ is None else environ
    if active:
        return True
    names = _exporter_names(environ)
    # A host that set a provider up has imported the API: otherwise nothing is imported here.
    if not names and "opentelemetry.trace" not in sys.modules:
        return False
    if not _enabled(environ):
        return False
    if not _sdk_installed():
        if names:
            # Asked for by the environment (which a platform may set for every pod): say why there are none.
            log.warning(
                "tracing is off: the environment names the exporter(s) %s, but the OpenTelemetry SDK is not "
                "installed (pip install 'omi-adapters[otel]')",
                ", ".join(names),
            )
        return False
    from opentelemetry import context, propagate, trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        if not names:
            return False
        provider = _provider = _new_provider(names, environ)
        trace.set_tracer_provider(provider)
    _api = (context, propagate, trace)
    _tracer = provider.get_tracer("omi_adapters", __version__)
    _EPOCH_NS = time.time_ns() - time.perf_counter_ns()
    active = True
    return True


def _sdk_installed() -> bool:
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def _new_provider(names: list[str], environ: Mapping[str, str]) -> Any:
    from importlib.metadata import entry_points

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    installed = {ep.name: ep for ep in entry_points(group="opentelemetry_traces_exporter")}
    exporters = []
    for name in names:
        if name not in installed:
            known = ", ".join(sorted(installed)) or "none"
            hint = " (pip install opentelemetry-exporter-otlp)" if name.startswith("otlp") else ""
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER names '{name}', an exporter that is not installed{hint}; installed: {known}"
            )
        exporters.append(installed[name].load()())
    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {SERVICE_NAME: "omi-adapters"})
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def shutdown() -> None:
    """Export the spans still buffered (the provider this module made; a host's own provider is its own)."""
    global active
    active = False
    if _provider is not None:
        _provider.shutdown()


def ns(seconds: float) -> int:
    """A ``time.perf_counter()`` reading as the Unix nanoseconds spans are timed in."""
    return _EPOCH_NS + int(seconds * 1e9)


class Request:
    """The server span of one request; current (for the DataPlane and the predict) until :meth:`finish`."""

    __slots__ = ("_otel_token", "_span_context", "_token", "ended", "span")

    def __init__(self, name: str, carrier: Mapping[str, str], attributes: dict[str, Any], began: float) -> None:
        context, propagate, trace = _api
        parent = propagate.extract(carrier) if carrier else None
        self.span = _tracer.start_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes, start_time=ns(began)
        )
        self._span_context = trace.set_span_in_context(self.span, parent)
        # Spans the model opens itself (an async predict, on this task) nest under this one.
        self._otel_token = context.attach(self._span_context)
        self._token = _current.set(self)
        #: :meth:`finish` was called.
        self.ended = False

    def child(self, name: str, began: float, ended: float, attributes: dict[str, Any] | None = None) -> None:
        """Record a finished step of this request (times from ``time.perf_counter()``)."""
        span = _tracer.start_span(name, context=self._span_context, attributes=attributes, start_time=ns(began))
        span.end(end_time=ns(ended))

    def finish(self, model: Any, version: str | None, outcome: str, error: ErrorCode | None, ended: float) -> None:
        """End the server span with what the request came to: the model that served it and its outcome."""
        context, _, trace = _api
        self.ended = True
        span = self.span
        if model is not None:
            span.set_attribute("omi.model", model.name)
            span.set_attribute("omi.model_version", model.version)
        elif version:
            span.set_attribute("omi.model_version", version)
        span.set_attribute("omi.outcome", outcome)
        if error is not None:
            span.set_attribute("error.type", error.name)
            span.set_status(trace.Status(trace.StatusCode.ERROR, error.name))
        span.end(end_time=ns(ended))
        try:
            _current.reset(self._token)
            context.detach(self._otel_token)
        except ValueError:  # finished in another context than it began (never on the hot paths)
            pass


def start(protocol: str, name: str, carrier: Mapping[str, str], attributes: dict[str, Any]) -> Request:
    """Begin the server span of a request arriving now (call only when :data:`active`)."""
    attributes["omi.protocol"] = protocol
    return Request(name, carrier, attributes, time.perf_counter())


def start_rpc(protocol: str, service: str, rpc: str, metadata: Iterable[tuple[str, Any]] | None) -> Request:
    """Begin the server span of a gRPC call's request, its parent the ``traceparent`` of the call's metadata."""
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}
    return start(protocol, f"{service}/{rpc}", grpc_carrier(metadata), attributes)


def current() -> Request | None:
    """The request being served in this context, when tracing is on."""
    return _current.get()


def http_carrier(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The propagation headers of an ASGI request, as the text map OpenTelemetry's propagators read."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _HEADERS}


def grpc_carrier(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """The propagation entries of gRPC invocation metadata."""
    return {k: v for k, v in metadata or () if k in ("traceparent", "tracestate", "baggage") and isinstance(v, str)}
