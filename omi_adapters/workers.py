"""``omi serve --workers N``: N server processes on the same ports, under one supervisor.

Python runs one thread of Python code at a time; a predict that holds the GIL (pre- and
post-processing, small models) uses one core however many threads wait. Worker processes are
how such a model uses every core, as uvicorn's and gunicorn's workers are.

- The supervisor loads no model and imports no framework. It binds the REST port once and
  hands the listening socket to every worker (the kernel spreads connections over them), and
  checks that the gRPC and OMI ports are free; the workers then bind those with
  ``SO_REUSEPORT``, which grpcio needs to share a port. Another process of the same user could
  join such a port group while it is open (Linux allows it to the same user only): run one
  ``omi serve`` per port set.
- Workers start one after another, each once the one before has loaded its models and is
  serving, so that loads (which often need twice a model's memory) never overlap.
- A worker that dies once it has served is replaced (a crash of the model, an OOM kill); one
  that fails before it serves ends the supervisor with its exit code (a bad model file, a port
  in use: starting it again would fail again).
- SIGTERM or SIGINT to the supervisor, or an OMI Shutdown in any worker, stops every worker
  gracefully (each drains its requests within ``--graceful-timeout``); the supervisor exits 0.

Workers talk to the supervisor over one pipe, one line per message (``ready N``, ``stop``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WORKER_ENV", "WorkerLink", "supervise"]

log = logging.getLogger("omi_adapters.workers")

#: Set in a worker's environment: its index, the REST socket's fd, the supervisor pipe's fd.
WORKER_ENV = "OMI_WORKER"
_HTTP_FD_ENV = "OMI_WORKER_HTTP_FD"
_PIPE_FD_ENV = "OMI_WORKER_PIPE_FD"
#: Where prometheus-client's multiprocess mode keeps every worker's values.
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: A worker that dies this soon after the previous restart of its slot waits before the next.
_RESTART_BACKOFF = 1.0
#: Besides the graceful timeout: how long stopping workers may take to exit before SIGKILL.
_EXIT_MARGIN = 10.0


class WorkerLink:
    """A worker's end of the supervisor's pipe, and the REST socket it was handed."""

    def __init__(self, index: int, http_fd: int | None, pipe_fd: int) -> None:
        self.index = index
        self._http_fd = http_fd
        self._pipe_fd = pipe_fd

    @classmethod
    def from_env(cls) -> WorkerLink | None:
        """The link of this process, if a supervisor started it."""
        index = os.environ.get(WORKER_ENV)
        if index is None:
            return None
        http = os.environ.get(_HTTP_FD_ENV)
        return cls(int(index), int(http) if http else None, int(os.environ[_PIPE_FD_ENV]))

    def http_socket(self) -> socket.socket | None:
        """The supervisor's listening REST socket, shared by every worker."""
        return None if self._http_fd is None else socket.socket(fileno=self._http_fd)

    def ready(self) -> None:
        """Tell the supervisor that this worker serves: the next one may start loading."""
        self._send(f"ready {self.index}")

    def request_stop(self) -> None:
        """Ask the supervisor to stop every worker (an authorized OMI Shutdown)."""
        self._send("stop")

    def _send(self, message: str) -> None:
        try:
            os.write(self._pipe_fd, (message + "\n").encode())
        except OSError:
            log.warning("the supervisor is gone; %r not delivered", message)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float
    ready: bool = False


def supervise(
    argv: Sequence[str],
    *,
    workers: int,
    host: str,
    http_port: int | None,
    grpc_ports: Sequence[tuple[int, str]],
    graceful_timeout: float,
    metrics: bool = False,
    metrics_port: int | None = None,
    reload: Sequence[str] = (),
) -> int:
    """Run ``omi`` with ``argv`` in ``workers`` processes until told to stop; the exit code.

    Args:
        argv: the ``omi serve`` command line (each worker runs it, as a worker).
        workers: how many processes.
        host: the address the ports are on.
        http_port: the REST port to bind and share, or None without REST.
        grpc_ports: ``(port, flag)`` of each gRPC port, checked free before the workers bind them.
        graceful_timeout: how long each worker may drain when stopped.
        metrics: the workers record metrics: they share a fresh ``$PROMETHEUS_MULTIPROC_DIR``
            (removed at the end), so that a scrape of any worker reports the totals of all.
        metrics_port: serve those totals at ``/metrics`` on this port, from the supervisor.
        reload: for development: folders to watch; when a Python file in them changes, every
            worker is replaced by one that imports the models anew (one that then fails to start
            is reported, and the next change tries again).
    """
    from omi_adapters.server import bind_socket

    sockets = [bind_socket(host, http_port, "--http-port")] if http_port is not None else []
    for port, flag in grpc_ports:
        bind_socket(host, port, flag).close()
    if sockets:
        sockets[0].listen(2048)
        sockets[0].set_inheritable(True)
    metrics_dir = _metrics_dir() if metrics else None
    stop_metrics = None
    if metrics_dir is not None and metrics_port is not None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        from omi_adapters.server import serve_metrics

        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        stop_metrics = serve_metrics(registry, host, metrics_port)
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    slots: dict[int, _Worker] = {}
    code = 0
    watching = _watch(reload, write_fd) if reload else None
    try:
        buffer = b""
        pending = list(range(workers))  # slots to start, one at a time
        while True:
            starting = any(not w.ready for w in slots.values())
            if pending and not starting and not stopping:
                index = pending.pop(0)
                slots[index] = _spawn(argv, index, sockets, write_fd)
            readable, _, _ = select.select([read_fd], [], [], 0.1)
            if readable:
                buffer += os.read(read_fd, 4096)
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line == b"stop":
                        log.info("OMI Shutdown: stopping every worker")
                        stopping = True
                    elif line == b"reload" and not stopping:
                        log.info("a model file changed: restarting the server")
                        _stop_all(list(slots.values()), graceful_timeout)
                        slots.clear()
                        pending = list(range(workers))
                    elif line.startswith(b"ready "):
                        worker = slots.get(int(line.split()[1]))
                        if worker is not None:
                            worker.ready = True
                            log.info("worker %d (pid %d) is serving", worker.index, worker.process.pid)
            if stopping:
                break
            for index, worker in list(slots.items()):
                status = worker.process.poll()
                if status is None:
                    continue
                if not worker.ready and reload:
                    log.error("worker %d %s before it served; waiting for a change to the model files", index,
                              _describe(status))  # fmt: skip
                    del slots[index]
                    continue
                if not worker.ready:
                    log.error("worker %d %s before it served; stopping", index, _describe(status))
                    code = status if status > 0 else 1
                    stopping = True
                    break
                log.warning("worker %d (pid %d) %s; starting another", index, worker.process.pid, _describe(status))
                _mark_dead(worker.process.pid, metrics_dir)
                if time.monotonic() - worker.started < _RESTART_BACKOFF:
                    time.sleep(_RESTART_BACKOFF)
                del slots[index]
                pending.insert(0, index)
            if stopping:
                break
    finally:
        if watching is not None:
            watching.set()
        _stop_all(list(slots.values()), graceful_timeout)
        for worker in slots.values():
            _mark_dead(worker.process.pid, metrics_dir)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
        os.close(read_fd)
        os.close(write_fd)
        if stop_metrics is not None:
            stop_metrics()
        if metrics_dir is not None and metrics_dir[1]:
            os.environ.pop(_MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir[0], ignore_errors=True)
    log.info("stopped")
    return code


def _watch(folders: Sequence[str], pipe_fd: int) -> threading.Event:
    """Watch ``folders`` for changed Python files in a thread; each change writes ``reload`` to the pipe."""
    from watchfiles import PythonFilter, watch

    stop = threading.Event()

    def run() -> None:
        for _ in watch(*folders, watch_filter=PythonFilter(), stop_event=stop, debounce=300):
            os.write(pipe_fd, b"reload\n")

    threading.Thread(target=run, name="omi-reload", daemon=True).start()
    return stop


def _metrics_dir() -> tuple[str, bool] | None:
    """The workers' shared metrics directory and whether it is ours to remove; None without prometheus-client."""
    if importlib.util.find_spec("prometheus_client") is None:
        return None
    given = os.environ.get(_MULTIPROC_ENV)
    if given:
        return given, False  # the operator's: kept
    path = tempfile.mkdtemp(prefix="omi-metrics-")
    # Set before any worker starts: prometheus-client chooses its mode when a worker imports it.
    os.environ[_MULTIPROC_ENV] = path
    return path, True


def _mark_dead(pid: int, metrics_dir: tuple[str, bool] | None) -> None:
    """Drop a dead worker's live gauges (in flight, queued, state); its counters stay in the totals."""
    if metrics_dir is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_dir[0])  # type: ignore[no-untyped-call]


def _spawn(argv: Sequence[str], index: int, sockets: list[socket.socket], pipe_fd: int) -> _Worker:
    env = {**os.environ, WORKER_ENV: str(index), _PIPE_FD_ENV: str(pipe_fd)}
    fds = [pipe_fd]
    if sockets:
        env[_HTTP_FD_ENV] = str(sockets[0].fileno())
        fds.append(sockets[0].fileno())
    process = subprocess.Popen([sys.executable, "-m", "omi_adapters.cli", *argv], env=env, pass_fds=fds)
    log.info("worker %d started (pid %d)", index, process.pid)
    return _Worker(index, process, time.monotonic())


def _stop_all(workers: list[_Worker], graceful_timeout: float) -> None:
    alive = [w for w in workers if w.process.poll() is None]
    for worker in alive:
        worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + graceful_timeout + _EXIT_MARGIN
    for worker in alive:
        try:
            worker.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop in time; killing it", worker.index)
            worker.process.kill()
            worker.process.wait()


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with code {status}"
