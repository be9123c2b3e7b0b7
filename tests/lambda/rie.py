"""Run a Lambda bundle under the real AWS Lambda Runtime Interface Emulator and awslambdaric.

The runtime is started as Lambda starts it: from the function's code folder, with
``python -S`` (no site-packages) so that the bundle's own dependencies are the ones imported;
only the runtime interface client (which Lambda's managed runtimes provide) is put on the path.
The emulator cannot take two invocations at once: :meth:`Emulator.invoke` is serial.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import free_port

#: What Lambda's Python runtime provides besides the standard library.
RUNTIME_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")


def runtime_path(into: Path) -> Path:
    """A folder linking only the runtime interface client's packages from this environment."""
    into.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            top = file.parts[0]
            if top.endswith((".dist-info", ".data")) or top in ("..", "bin") or top == "__pycache__":
                continue
            link = into / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))))
    return into


class Emulator:
    """One execution environment: the emulator running ``handler`` from ``code``."""

    def __init__(self, rie: Path, code: Path, handler: str, env: dict[str, str], shim: Path) -> None:
        self.port = free_port()
        api_port = free_port()
        self.logfile = tempfile.NamedTemporaryFile("w+", prefix="rie-", suffix=".log")  # noqa: SIM115 - closed by stop()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{code}{os.pathsep}{shim}",
            "PYTHONUNBUFFERED": "1",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
            **env,
        }
        command = [
            str(rie),
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
            "--runtime-api-address", f"127.0.0.1:{api_port}",
            sys.executable, "-S", "-m", "awslambdaric", handler,
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, cwd=code, env=environment, stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start:\n{self.log()}")
            time.sleep(0.02)

    def invoke(self, event: Any, timeout: float = 60) -> Any:
        """POST one event (serially) and return the function's JSON answer."""
        url = f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations"
        request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def log(self) -> str:
        """What the emulator and the runtime printed so far (all of it once stopped)."""
        if self.logfile.closed:
            return self._final_log
        return Path(self.logfile.name).read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.logfile.closed:
            self._final_log = self.log()
            self.logfile.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
