"""Start a real ``omi serve`` in a subprocess on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running ``omi serve`` process and its ports."""

    proc: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    omi_port: int
    protocols: tuple[str, ...]
    logfile: tempfile._TemporaryFileWrapper[str]

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def omi_url(self) -> str:
        return f"127.0.0.1:{self.omi_port}"

    def output(self) -> str:
        """What the server printed so far (complete once it has exited)."""
        return Path(self.logfile.name).read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll ``/v2/health/ready`` until 200 (asking starts lazy models' loads)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"omi serve did not become ready:\n{self.output()}") from None
                time.sleep(0.05)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, wait for the exit, return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(
    *targets: str | Path,
    protocols: Sequence[str] = ("rest", "grpc"),
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = 60,
    launcher: Sequence[str] = ("-m", "omi_adapters.cli"),
) -> Served:
    """Start ``omi serve TARGET...`` and wait until every chosen port listens.

    ``launcher``: what runs the CLI (``python -m omi_adapters.cli``, or a script that prepares
    the process first and then calls it).
    """
    ports = {"rest": free_port(), "grpc": free_port(), "omi": free_port()}
    command = [
        sys.executable, *launcher, "serve", *map(str, targets),
        "--host", "127.0.0.1",
        "--http-port", str(ports["rest"]), "--grpc-port", str(ports["grpc"]), "--omi-port", str(ports["omi"]),
        "--protocols", ",".join(protocols), *args,
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # The log goes to a file, not a pipe: a pipe nobody reads would block a chatty server.
    logfile = tempfile.NamedTemporaryFile("w+", prefix="omi-serve-", suffix=".log")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=logfile, stderr=subprocess.STDOUT, text=True)
    served = Served(proc, ports["rest"], ports["grpc"], ports["omi"], tuple(protocols), logfile)
    deadline = time.monotonic() + timeout
    while not all(_listening(ports[p]) for p in protocols):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                served.terminate(5)
            logfile.close()
            raise RuntimeError(f"omi serve did not start (exit {proc.returncode}):\n{served.output()}")
        time.sleep(0.05)
    return served


@contextlib.contextmanager
def serve(*targets: str | Path, **kwargs: object) -> Iterator[Served]:
    """``with serve("examples/adder.py", protocols=("rest",)) as srv: ...``; stops it afterwards."""
    served = start(*targets, **kwargs)  # type: ignore[arg-type]
    try:
        yield served
    finally:
        try:
            served.terminate()
        finally:
            served.logfile.close()
