"""``omi serve``: OIP REST, OIP gRPC and OMI gRPC in one process on one asyncio loop.

uvicorn's ``Server.serve()`` coroutine (httptools, uvloop) and the ``grpc.aio`` servers run side by
side and share one :class:`DataPlane`, one thread pool for sync predict functions and one
shutdown path: SIGTERM or SIGINT stops accepting, lets in-flight requests finish (up to
``--graceful-timeout``) and exits 0.

This module imports only the standard library at import time: ``omi --help`` and
``omi inspect`` must not pay for uvicorn and grpc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omi_adapters.access import AccessGate, access_summary, check_origins, load_tls, load_token
from omi_adapters.contract import Model
from omi_adapters.dataplane import PREDICT_THREAD_PREFIX
from omi_adapters.errors import ConfigurationError
from omi_adapters.limits import HttpLimits, Limits

__all__ = [
    "PROTOCOLS",
    "ServeOptions",
    "add_arguments",
    "bind_socket",
    "raise_open_file_limit",
    "run",
    "serve",
    "supervise",
]

PROTOCOLS = ("rest", "grpc", "omi")
#: --model-control-mode, as Triton names its modes: whether clients may load and unload models.
MODEL_CONTROL_MODES = ("none", "explicit")
MiB = 1024 * 1024
#: Triton's default for HTTP requests; gRPC messages take the same bound.
DEFAULT_MAX_MESSAGE_BYTES = 64 * MiB

log = logging.getLogger("omi_adapters")


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``omi serve`` can be told; defaults as documented on the flags."""

    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 8081
    omi_port: int = 45000
    protocols: tuple[str, ...] = PROTOCOLS
    omi_model: str | None = None
    workers: int = 1
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    graceful_timeout: float = 30.0
    log_level: str = "info"
    #: ``text`` (human-readable lines) or ``json`` (one object per line).
    log_format: str = "text"
    #: One access line per inference request on every protocol (off: it costs tens of microseconds a request).
    access_log: bool = False
    limits: Limits = field(default_factory=Limits)
    http: HttpLimits = field(default_factory=HttpLimits)
    grpc_max_concurrent_rpcs: int = 1024
    grpc_max_streams: int = 100
    grpc_keepalive: float = 60.0
    grpc_min_ping_interval: float = 10.0
    auth_token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    #: ``explicit``: the model repository extension's load and unload are served; ``none``: refused.
    model_control_mode: str = "none"
    #: Read once from ``auth_token_file`` or ``$OMI_AUTH_TOKEN`` (never shown in a repr or log).
    auth_token: bytes | None = field(default=None, repr=False)
    #: The PEM certificate and key of ``tls_cert`` and ``tls_key``, checked.
    tls: tuple[bytes, bytes] | None = field(default=None, repr=False)
    #: Record Prometheus metrics (``GET /metrics`` on the REST port) when prometheus-client is installed.
    metrics: bool = True
    #: Serve ``/metrics`` on a port of its own too (the way to scrape a server without REST).
    metrics_port: int | None = None
    #: The latency histograms' buckets in seconds; None: ``omi_adapters.metrics.DEFAULT_BUCKETS``.
    metrics_buckets: tuple[float, ...] | None = None


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigurationError(f"${name} must be a TCP port number, got {value!r}")
    return int(value)


def _env_count(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"${name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _protocols(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in chosen if p not in PROTOCOLS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PROTOCOLS)} (comma separated), got {text!r}")
    return chosen


def _origins(text: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())


def _buckets(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or values[0] <= 0 or any(b <= a for a, b in itertools.pairwise(values)):
        raise argparse.ArgumentTypeError(f"increasing numbers of seconds > 0, comma separated; got {text!r}")
    return values


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``omi serve``, every limit with its default."""
    d = ServeOptions()
    h = d.http
    lim = d.limits
    net = parser.add_argument_group("ports")
    net.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    net.add_argument("--http-port", type=int, default=None, help="OIP REST port (default: $PORT, else 8080)")
    net.add_argument("--grpc-port", type=int, default=8081, help="OIP gRPC port (default: 8081)")
    net.add_argument("--omi-port", type=int, default=None, help="OMI gRPC port (default: $PSC_MODEL_PORT, else 45000)")
    net.add_argument(
        "--omi-model", default=None, help="the model OMI serves (one per port; default: the first TARGET's)"
    )
    net.add_argument(
        "--protocols", type=_protocols, default=PROTOCOLS, help="which front ends to run (default: rest,grpc,omi)"
    )

    net.add_argument(
        "--reload",
        action="store_true",
        help="for development: restart the server when a Python file beside a model changes (default: off)",
    )
    net.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes, each serving every protocol on the same ports under one supervisor "
        "(default: $WEB_CONCURRENCY, else 1)",
    )

    run = parser.add_argument_group("requests")
    run.add_argument(
        "--request-timeout",
        type=_seconds,
        default=lim.request_timeout,
        help="seconds a request may take; the client's deadline and the model's run timeout may set "
        f"less (default: {lim.request_timeout:g})",
    )
    run.add_argument(
        "--predict-threads",
        type=int,
        default=None,
        help="concurrent calls of each sync predict, in its own threads, unless the model declares "
        "max_concurrency (default: min(32, cores + 4))",
    )
    run.add_argument(
        "--max-queue",
        type=_count,
        default=lim.max_queue,
        help=f"requests that may wait for a model's predict slot, unless it declares max_queue (default: {lim.max_queue})",
    )
    run.add_argument(
        "--max-inflight",
        type=_count,
        default=lim.max_inflight,
        help=f"inference requests in flight in the server; more get 503 (default: {lim.max_inflight})",
    )
    run.add_argument(
        "--max-inflight-bytes",
        type=_count,
        default=lim.max_inflight_bytes,
        help=f"request bytes those may hold together; more get 503 (default: {lim.max_inflight_bytes // MiB} MiB)",
    )
    run.add_argument(
        "--max-message-bytes",
        type=_count,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help=f"largest request or reply, REST body or gRPC message (default: {DEFAULT_MAX_MESSAGE_BYTES // MiB} MiB)",
    )
    run.add_argument(
        "--stall-timeout",
        type=_seconds,
        default=lim.stall_timeout,
        help="liveness turns false when every predict slot of a model has been stuck past its deadline "
        f"this long; 0: never (default: {lim.stall_timeout:g})",
    )
    run.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=30.0,
        help="seconds in-flight requests get after SIGTERM (default: 30)",
    )

    http = parser.add_argument_group("HTTP connections")
    http.add_argument(
        "--max-header-bytes",
        type=_count,
        default=h.max_header_bytes,
        help=f"request line and headers; more get 431 (default: {h.max_header_bytes // 1024} KiB)",
    )
    http.add_argument(
        "--max-headers",
        type=_count,
        default=h.max_headers,
        help=f"header fields; more get 431 (default: {h.max_headers})",
    )
    http.add_argument(
        "--header-timeout",
        type=_seconds,
        default=h.header_timeout,
        help=f"seconds from a request's first byte to the end of its headers (default: {h.header_timeout:g})",
    )
    http.add_argument(
        "--body-timeout",
        type=_seconds,
        default=h.body_timeout,
        help=f"seconds to receive a whole request body (default: {h.body_timeout:g})",
    )
    http.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=h.idle_timeout,
        help=f"seconds a connection may wait for its next request (default: {h.idle_timeout:g})",
    )
    http.add_argument(
        "--send-timeout",
        type=_seconds,
        default=h.send_timeout,
        help=f"seconds a reply may wait for a client that does not read (default: {h.send_timeout:g})",
    )
    http.add_argument(
        "--max-connections",
        type=_count,
        default=h.max_connections,
        help=f"open HTTP connections; more get 503 (default: {h.max_connections})",
    )

    rpc = parser.add_argument_group("gRPC connections")
    rpc.add_argument(
        "--grpc-max-concurrent-rpcs",
        type=_count,
        default=d.grpc_max_concurrent_rpcs,
        help=f"RPCs in progress per gRPC server; more get RESOURCE_EXHAUSTED (default: {d.grpc_max_concurrent_rpcs})",
    )
    rpc.add_argument(
        "--grpc-max-streams",
        type=_count,
        default=d.grpc_max_streams,
        help=f"concurrent streams per HTTP/2 connection (default: {d.grpc_max_streams})",
    )
    rpc.add_argument(
        "--grpc-keepalive",
        type=_seconds,
        default=d.grpc_keepalive,
        help=f"seconds between the server's pings on a quiet connection, to find dead peers (default: {d.grpc_keepalive:g})",
    )
    rpc.add_argument(
        "--grpc-min-ping-interval",
        type=_seconds,
        default=d.grpc_min_ping_interval,
        help="clients pinging more often than this are disconnected (keepalive enforcement; "
        f"default: {d.grpc_min_ping_interval:g})",
    )

    sec = parser.add_argument_group("security")
    sec.add_argument(
        "--auth-token-file",
        default=None,
        metavar="PATH",
        help="require 'Authorization: Bearer TOKEN' (REST) or 'authorization' metadata (gRPC, OMI) with "
        "the token in this file; $OMI_AUTH_TOKEN sets it too; health and readiness stay open (default: off)",
    )
    sec.add_argument(
        "--tls-cert", default=None, metavar="PATH", help="serve REST and gRPC over TLS with this certificate"
    )
    sec.add_argument("--tls-key", default=None, metavar="PATH", help="the private key of --tls-cert")
    sec.add_argument(
        "--cors-origins",
        type=_origins,
        default=(),
        help="web origins allowed to call the REST API (comma separated, or *); requests from any "
        "other origin are refused (default: none, only same-origin)",
    )
    sec.add_argument(
        "--model-control-mode",
        choices=MODEL_CONTROL_MODES,
        default="none",
        help="explicit: clients may load and unload models (the model repository extension, token-protected "
        "when a token is set; needs --workers 1); none: those calls get 400, as Triton's mode of that name "
        "answers them (default: none)",
    )
    obs = parser.add_argument_group("metrics")
    obs.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="record Prometheus metrics of every protocol, at GET /metrics on the REST port "
        "(needs prometheus-client; default: on)",
    )
    obs.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics on this port too: the way to scrape a server without REST (default: none)",
    )
    obs.add_argument(
        "--metrics-buckets",
        type=_buckets,
        default=None,
        metavar="SECONDS,...",
        help="bounds of the latency histograms' buckets (default: 0.001 to 600 seconds, 18 buckets)",
    )
    logs = parser.add_argument_group("logs")
    logs.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    logs.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line, for omi, uvicorn and grpc alike (default: text)",
    )
    logs.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="one line per inference request on every protocol: protocol, endpoint or RPC, model, "
        "version, status, duration, bytes, request id, peer (default: off)",
    )


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """Resolve flags and environment (``$PORT`` for Knative, ``$PSC_MODEL_PORT`` for OMI)."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigurationError("--tls-cert and --tls-key go together")
    # A bad token, certificate or origin fails here, in one line, before any port opens.
    token = load_token(args.auth_token_file, os.environ)
    tls = load_tls(args.tls_cert, args.tls_key)
    origins = check_origins(args.cors_origins)
    return ServeOptions(
        host=args.host,
        http_port=args.http_port if args.http_port is not None else _env_port("PORT", 8080),
        grpc_port=args.grpc_port,
        omi_port=args.omi_port if args.omi_port is not None else _env_port("PSC_MODEL_PORT", 45000),
        protocols=tuple(args.protocols),
        omi_model=args.omi_model,
        workers=args.workers if args.workers is not None else _env_count("WEB_CONCURRENCY", 1),
        max_message_bytes=args.max_message_bytes,
        graceful_timeout=args.graceful_timeout,
        log_level=args.log_level,
        log_format=args.log_format,
        access_log=args.access_log,
        limits=Limits(
            request_timeout=args.request_timeout,
            max_inflight=args.max_inflight,
            max_inflight_bytes=args.max_inflight_bytes,
            predict_threads=args.predict_threads,
            max_queue=args.max_queue,
            stall_timeout=args.stall_timeout,
        ),
        http=HttpLimits(
            max_header_bytes=args.max_header_bytes,
            max_headers=args.max_headers,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            idle_timeout=args.idle_timeout,
            send_timeout=args.send_timeout,
            max_connections=args.max_connections,
        ),
        grpc_max_concurrent_rpcs=args.grpc_max_concurrent_rpcs,
        grpc_max_streams=args.grpc_max_streams,
        grpc_keepalive=args.grpc_keepalive,
        grpc_min_ping_interval=args.grpc_min_ping_interval,
        auth_token_file=args.auth_token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        cors_origins=origins,
        model_control_mode=args.model_control_mode,
        auth_token=token,
        tls=tls,
        metrics=args.metrics,
        metrics_port=args.metrics_port,
        metrics_buckets=args.metrics_buckets,
    )


def supervise(argv: Sequence[str], args: argparse.Namespace) -> int | None:
    """With ``--workers`` > 1 or ``--reload``, run the workers and return the exit code; None: serve
    in this process.

    Called before any model is loaded: the supervisor never loads one.
    """
    from omi_adapters.workers import WORKER_ENV, supervise

    options = options_from_args(args)
    if options.workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {options.workers}")
    if options.workers > 1 and options.model_control_mode == "explicit":
        # Each worker holds its own models, and a load or unload would reach only the worker that
        # answered it: the others would serve on as before, and the model would come and go by chance.
        raise ConfigurationError(
            "--model-control-mode explicit needs --workers 1: a repository load or unload would reach only one worker"
        )
    if (options.workers == 1 and not args.reload) or os.environ.get(WORKER_ENV) is not None:
        return None
    from omi_adapters import logs

    logs.configure(options.log_level, options.log_format)
    raise_open_file_limit()
    from omi_adapters import malloc

    malloc.tune()  # large tensors reuse pages instead of faulting in fresh ones per request
    flags = {"grpc": (options.grpc_port, "--grpc-port"), "omi": (options.omi_port, "--omi-port")}
    return supervise(
        argv,
        workers=options.workers,
        host=options.host,
        http_port=options.http_port if "rest" in options.protocols else None,
        grpc_ports=[flags[p] for p in options.protocols if p in flags],
        graceful_timeout=options.graceful_timeout,
        metrics=options.metrics,
        metrics_port=options.metrics_port,
        reload=_watched(args.targets) if args.reload else (),
    )


def _watched(targets: Sequence[str]) -> list[str]:
    """The folders ``--reload`` watches: each model file's, and the current one for module targets."""
    folders = []
    for target in targets:
        location = target.partition(":")[0]
        if location.endswith(".py") or "/" in location:
            folders.append(str(Path(location).resolve().parent))
        else:
            folders.append(os.getcwd())
    return list(dict.fromkeys(folders))


def run(models: Sequence[Model], args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT or an OMI Shutdown; returns the exit code."""
    options = options_from_args(args)
    from omi_adapters import logs

    logs.configure(options.log_level, options.log_format)
    raise_open_file_limit()
    from omi_adapters import malloc

    malloc.tune()  # large tensors reuse pages instead of faulting in fresh ones per request
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        code = runner.run(serve(models, options))
    stuck = _busy_predict_threads()
    if stuck:
        # Python cannot stop a thread, and would join these at exit for as long as they run: a
        # predict that outlived the grace period must not keep a stopped server alive.
        log.warning(
            "%d predict call(s) still running after the %ss grace period; exiting without them",
            len(stuck),
            options.graceful_timeout,
        )
        logging.shutdown()
        os._exit(code)
    return code


def _busy_predict_threads(wait: float = 0.5) -> list[threading.Thread]:
    """The predict pool's threads still running once it is shut down (idle ones exit at once)."""
    deadline = time.monotonic() + wait
    threads = [t for t in threading.enumerate() if t.name.startswith(PREDICT_THREAD_PREFIX)]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]


async def serve(models: Sequence[Model], options: ServeOptions) -> int:
    """Run the chosen front ends until asked to stop."""
    from omi_adapters import tracing
    from omi_adapters.dataplane import DataPlane
    from omi_adapters.workers import WorkerLink

    loop = asyncio.get_running_loop()
    metrics = _metrics(models, options)
    if tracing.configure():
        log.info("tracing: an OpenTelemetry span per inference request (OTEL_* environment)")
    dataplane = DataPlane(
        models, limits=options.limits, observer=metrics, model_control=options.model_control_mode == "explicit"
    )
    if options.access_log:
        from omi_adapters.logs import AccessLog

        dataplane.access_log = AccessLog()
    stop = asyncio.Event()
    worker = WorkerLink.from_env()
    # An OMI Shutdown stops this process, or, in a worker, every worker of the supervisor.
    shutdown = stop.set if worker is None else worker.request_stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _log_platform()
    stoppers: list[Callable[[], Any]] = []
    tasks: list[asyncio.Task[Any]] = []
    grpc_servers: list[tuple[Any, Any]] = []
    try:
        # Every port is bound before any model loads: a port in use fails at once, in one line.
        sockets: list[socket.socket] = []
        if "rest" in options.protocols:
            shared = worker.http_socket() if worker is not None else None
            sockets.append(shared or bind_socket(options.host, options.http_port, "--http-port"))
        shared_ports = worker is not None  # the supervisor checked them; workers share them
        if "grpc" in options.protocols:
            grpc_servers.append(_grpc_server(dataplane, options, options.grpc_port, "oip", shutdown, shared_ports))
        if "omi" in options.protocols:
            grpc_servers.append(_grpc_server(dataplane, options, options.omi_port, "omi", shutdown, shared_ports))

        # Eager models load before the ports listen; background ones start loading; lazy ones wait.
        # A failed load is logged once, with its traceback, where it fails (loading.py).
        await loop.run_in_executor(None, dataplane.start)
        if metrics is not None:
            metrics.refresh(dataplane)
            tasks.append(asyncio.create_task(_refresh_metrics(metrics, dataplane), name="metrics"))
            if options.metrics_port is not None and worker is None:
                stoppers.append(_metrics_server(metrics, options))

        if sockets:
            http = _http_server(dataplane, options)
            tasks.append(asyncio.create_task(http.serve(sockets=sockets), name="uvicorn"))
            stoppers.append(lambda: setattr(http, "should_exit", True))
            while not http.started:
                if tasks[-1].done():
                    await tasks[-1]  # raises the reason
                    raise ConfigurationError(f"the REST server on {options.host}:{options.http_port} did not start")
                await asyncio.sleep(0.01)
            warm = asyncio.ensure_future(http.oip.prepare())
            warm.add_done_callback(_report_warm_up)
        for server, _ in grpc_servers:
            await server.start()
        log.info(
            "serving %s: %s",
            ", ".join(f"{m.name}:{m.version}" for m in dataplane.models),
            ", ".join(_endpoints(options)),
        )
        if worker is not None:
            worker.ready()
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            for task in done:
                task.result()  # a front end died: surface why
        log.info("shutting down: finishing in-flight requests (up to %ss)", options.graceful_timeout)
        for task in tasks:
            if task.get_name() == "metrics":
                task.cancel()
        for stopper in stoppers:
            stopper()
        for _, health in grpc_servers:
            health.stop_watches()
        await asyncio.gather(
            *(s.stop(options.graceful_timeout) for s, _ in grpc_servers),
            *(t for t in tasks if t.get_name() != "metrics"),
        )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # The front ends have drained within the grace period: a predict still running has
        # nobody left to answer (run() decides what to do about it).
        dataplane.close()
        if metrics is not None:
            metrics.flush()  # with --workers, what this worker counted stays in the totals
        tracing.shutdown()  # export the spans still buffered
    log.info("stopped")
    return 0


def _metrics(models: Sequence[Model], options: ServeOptions) -> Any:
    """The metrics of this process (an Observer), or None: turned off, or prometheus-client absent."""
    if not options.metrics:
        return None
    try:
        from omi_adapters import metrics
    except ImportError:
        log.info("metrics are off: prometheus-client is not installed (pip install 'omi-adapters[rest]')")
        return None
    return metrics.Metrics(models, buckets=options.metrics_buckets or metrics.DEFAULT_BUCKETS)


async def _refresh_metrics(metrics: Any, dataplane: Any, every: float = 1.0) -> None:
    """Record load states as they change (a lazy or background load finishing, a failure)."""
    while True:
        await asyncio.sleep(every)
        metrics.refresh(dataplane)


def _metrics_server(metrics: Any, options: ServeOptions) -> Callable[[], None]:
    """Serve ``/metrics`` on ``--metrics-port`` (a thread of prometheus-client's); its stopper."""
    return serve_metrics(metrics.collect_registry(), options.host, options.metrics_port or 0)


def serve_metrics(registry: Any, host: str, port: int) -> Callable[[], None]:
    """Serve ``registry`` at ``http://host:port/metrics`` in a thread; returns what stops it."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port} (--metrics-port): {exc.strerror}") from None
    log.info("metrics on %s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


def _report_warm_up(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("building the REST metadata and docs routes failed", exc_info=task.exception())


def bind_socket(host: str, port: int, flag: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` (listening starts with the server), never shared.

    SO_REUSEADDR lets a restarted server take the port while old connections linger in
    TIME_WAIT; SO_REUSEPORT is not set, so a second server on the port is refused.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port} ({flag}): {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(f"port {port} ({flag}) is in use on {host}: is another server running?") from None
        raise ConfigurationError(f"cannot listen on {host}:{port} ({flag}): {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard one: each connection is a file descriptor.

    Linux starts processes at a soft limit of 1024 while the hard one is usually far higher;
    at 1024, a thousand idle sockets would lock every client out.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    else:
        log.debug("open-file limit raised from %d to %d", soft, target)


def _endpoints(options: ServeOptions) -> Iterator[str]:
    names = {
        "rest": ("OIP REST", options.http_port),
        "grpc": ("OIP gRPC", options.grpc_port),
        "omi": ("OMI gRPC", options.omi_port),
    }
    for protocol in options.protocols:
        label, port = names[protocol]
        yield f"{label} on {options.host}:{port}"


def _log_platform() -> None:
    # Knative sets these on every revision (runtime contract); logging them ties logs to a revision.
    names = {key: os.environ.get(f"K_{key.upper()}") for key in ("service", "revision", "configuration")}
    if names["service"] or names["revision"]:
        log.info("Knative %s", ", ".join(f"{key} {value}" for key, value in names.items() if value))


def _http_server(dataplane: Any, options: ServeOptions) -> Any:
    import uvicorn

    from omi_adapters.http_protocol import http_protocol
    from omi_adapters.rest import build_app

    class Server(uvicorn.Server):
        oip: Any  # the OIP application behind the access gate

        # serve() owns the signals here: uvicorn would otherwise take SIGTERM for itself
        # and re-raise it after its own shutdown, cutting the gRPC servers' drain short.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    # The origin check is always on; the token when one is set (health and readiness stay open).
    token = options.auth_token
    tls = options.tls is not None
    # The FastAPI half (metadata, docs) is built once the server listens: not on the way to the
    # first answer (serve() starts it).
    oip = build_app(dataplane, max_body_bytes=options.max_message_bytes, lazy=True)
    app = AccessGate(oip, token=token, origins=options.cors_origins)
    if token is not None or tls:
        log.info("OIP REST: %s", access_summary(options.auth_token_file, token is not None, tls))
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.http_port,
        http=http_protocol(options.http),
        interface="asgi3",  # AccessGate returns the application's coroutine (uvicorn would guess ASGI 2)
        lifespan="off",
        ws="none",  # no WebSocket routes: not importing uvicorn's WebSocket protocols saves ~25 ms of start
        access_log=False,
        # Nothing here reads the client address, so X-Forwarded-* need no per-request rewriting.
        proxy_headers=False,
        log_level=options.log_level,
        log_config=None,  # logging is configured once, for every logger (omi_adapters.logs)
        timeout_keep_alive=max(1, round(options.http.idle_timeout)),
        timeout_graceful_shutdown=int(options.graceful_timeout),
        ssl_certfile=options.tls_cert if tls else None,
        ssl_keyfile=options.tls_key if tls else None,
    )
    server = Server(config)
    server.oip = oip
    return server


def _grpc_server(
    dataplane: Any, options: ServeOptions, port: int, kind: str, shutdown: Callable[[], None], shared: bool = False
) -> Any:
    """A grpc.aio server for the OIP or OMI service, its port bound (it starts later).

    ``shared``: a worker of ``--workers``, whose port the supervisor checked and whose sibling
    workers bind it too.
    """
    import grpc

    flag = "--grpc-port" if kind == "oip" else "--omi-port"
    if not shared:
        # grpcio would share a port with another process (SO_REUSEPORT) and fail with a log of
        # its own: probe it as the REST port is bound, then bind without port sharing.
        bind_socket(options.host, port, flag).close()
    limit = options.max_message_bytes
    token, tls = options.auth_token, options.tls
    if token is not None or tls is not None:
        front = "OIP gRPC" if kind == "oip" else "OMI gRPC"
        log.info("%s: %s", front, access_summary(options.auth_token_file, token is not None, tls is not None))
    interceptors = None
    if token is not None:
        from omi_adapters.grpc_access import TokenInterceptor

        interceptors = [TokenInterceptor(token)]  # without a token, no interceptor and no cost
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 1 if shared else 0),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.max_concurrent_streams", options.grpc_max_streams),
            # Ping quiet connections to find peers that went away without closing them ...
            ("grpc.keepalive_time_ms", int(options.grpc_keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
            # ... and let clients keep theirs alive, but not flood the server with pings.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", int(options.grpc_min_ping_interval * 1000)),
            ("grpc.http2.max_ping_strikes", 2),
        ],
        maximum_concurrent_rpcs=options.grpc_max_concurrent_rpcs or None,
    )
    if kind == "oip":
        from omi_adapters import grpc_oip

        health = grpc_oip.add_to_server(server, dataplane)
    else:
        from omi_adapters import grpc_omi

        health = grpc_omi.add_to_server(server, dataplane, shutdown=shutdown, model=options.omi_model)
    address = f"{options.host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            cert, key = tls
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigurationError(f"port {port} ({flag}) is in use on {options.host}: is another server running?")
    return server, health
