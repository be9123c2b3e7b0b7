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
import concurrent.futures
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from omi_adapters.contract import Model
from omi_adapters.dataplane import PREDICT_THREAD_PREFIX
from omi_adapters.errors import ConfigurationError

__all__ = ["PROTOCOLS", "ServeOptions", "add_arguments", "run", "serve"]

PROTOCOLS = ("rest", "grpc", "omi")
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024

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
    workers: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    graceful_timeout: float = 30.0
    log_level: str = "info"


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigurationError(f"${name} must be a TCP port number, got {value!r}")
    return int(value)


def _protocols(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in chosen if p not in PROTOCOLS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PROTOCOLS)} (comma separated), got {text!r}")
    return chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``omi serve``."""
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    parser.add_argument("--http-port", type=int, default=None, help="OIP REST port (default: $PORT, else 8080)")
    parser.add_argument("--grpc-port", type=int, default=8081, help="OIP gRPC port (default: 8081)")
    parser.add_argument(
        "--omi-port", type=int, default=None, help="OMI gRPC port (default: $PSC_MODEL_PORT, else 45000)"
    )
    parser.add_argument(
        "--omi-model", default=None, help="the model OMI serves (one per port; default: the first TARGET's)"
    )
    parser.add_argument(
        "--protocols", type=_protocols, default=PROTOCOLS, help="which front ends to run (default: rest,grpc,omi)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="threads for sync predict functions (default: Python's)"
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest request or reply, REST body or gRPC message (default: 512 MiB)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests get after SIGTERM (default: 30)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """Resolve flags and environment (``$PORT`` for Knative, ``$PSC_MODEL_PORT`` for OMI)."""
    return ServeOptions(
        host=args.host,
        http_port=args.http_port if args.http_port is not None else _env_port("PORT", 8080),
        grpc_port=args.grpc_port,
        omi_port=args.omi_port if args.omi_port is not None else _env_port("PSC_MODEL_PORT", 45000),
        protocols=tuple(args.protocols),
        omi_model=args.omi_model,
        workers=args.workers,
        max_message_bytes=args.max_message_bytes,
        graceful_timeout=args.graceful_timeout,
        log_level=args.log_level,
    )


def run(models: Sequence[Model], args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT or an OMI Shutdown; returns the exit code."""
    options = options_from_args(args)
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    from omi_adapters.dataplane import DataPlane

    loop = asyncio.get_running_loop()
    executor = concurrent.futures.ThreadPoolExecutor(options.workers, thread_name_prefix=PREDICT_THREAD_PREFIX)
    dataplane = DataPlane(models, executor=executor)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _log_platform()

    # Eager models load before the ports open; background ones start loading; lazy ones wait.
    await loop.run_in_executor(None, dataplane.start)
    for model in dataplane.models:
        if model.load_error is not None:
            log.error("model %s version %s failed to load: %s", model.name, model.version, model.load_error)

    stoppers: list[Callable[[], Any]] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        if "rest" in options.protocols:
            http = _http_server(dataplane, options)
            tasks.append(asyncio.create_task(http.serve(), name="uvicorn"))
            stoppers.append(lambda: setattr(http, "should_exit", True))
            while not http.started:
                if tasks[-1].done():
                    await tasks[-1]  # raises the reason (port in use, ...)
                    raise ConfigurationError(f"the REST server on {options.host}:{options.http_port} did not start")
                await asyncio.sleep(0.01)
        grpc_servers = []
        if "grpc" in options.protocols:
            grpc_servers.append(await _grpc_server(dataplane, options, options.grpc_port, "oip", stop.set))
        if "omi" in options.protocols:
            grpc_servers.append(await _grpc_server(dataplane, options, options.omi_port, "omi", stop.set))
        log.info(
            "serving %s: %s",
            ", ".join(f"{m.name}:{m.version}" for m in dataplane.models),
            ", ".join(_endpoints(options)),
        )
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            for task in done:
                task.result()  # a front end died: surface why
        log.info("shutting down: finishing in-flight requests (up to %ss)", options.graceful_timeout)
        for stopper in stoppers:
            stopper()
        for _, health in grpc_servers:
            health.stop_watches()
        await asyncio.gather(*(s.stop(options.graceful_timeout) for s, _ in grpc_servers), *tasks)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # The front ends have drained within the grace period: a predict still running has
        # nobody left to answer (run() decides what to do about it).
        executor.shutdown(wait=False, cancel_futures=True)
    log.info("stopped")
    return 0


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

    from omi_adapters.rest import build_app

    class Server(uvicorn.Server):
        # serve() owns the signals here: uvicorn would otherwise take SIGTERM for itself
        # and re-raise it after its own shutdown, cutting the gRPC servers' drain short.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        build_app(dataplane, max_body_bytes=options.max_message_bytes),
        host=options.host,
        port=options.http_port,
        http="httptools",
        lifespan="off",
        access_log=False,
        # Nothing here reads the client address, so X-Forwarded-* need no per-request rewriting.
        proxy_headers=False,
        log_level=options.log_level,
        timeout_graceful_shutdown=int(options.graceful_timeout),
    )
    return Server(config)


async def _grpc_server(
    dataplane: Any, options: ServeOptions, port: int, kind: str, shutdown: Callable[[], None]
) -> Any:
    import grpc

    limit = options.max_message_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    if kind == "oip":
        from omi_adapters import grpc_oip

        health = grpc_oip.add_to_server(server, dataplane)
    else:
        from omi_adapters import grpc_omi

        health = grpc_omi.add_to_server(server, dataplane, shutdown=shutdown, model=options.omi_model)
    address = f"{options.host}:{port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen on {address} for {kind.upper()} gRPC: {exc}") from exc
    await server.start()
    return server, health
