"""What ``bench/run.py`` measures with: server processes pinned to cores, the load generators
(``wrk``, ``h2load``, ``upload.py``) and the process figures (memory, start-up time).

The harness itself runs on core 1 (``pin_self``); every client it starts inherits that, and
servers are started with ``taskset`` on core 0 (or on both cores where a figure needs them).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_CORE = "0"
CLIENT_CORE = "1"
BOTH_CORES = "0,1"
PAGE = os.sysconf("SC_PAGE_SIZE")


#: Whether cores 0 and 1 are ours to pin to (decided before ``pin_self`` narrows this process).
TWO_CORES = {0, 1} <= os.sched_getaffinity(0)


def pin_self() -> None:
    """Run the harness, and the clients it starts, on the client core."""
    if TWO_CORES:
        os.sched_setaffinity(0, {int(CLIENT_CORE)})


def pinned(cores: str) -> list[str]:
    return ["taskset", "-c", cores] if TWO_CORES and shutil.which("taskset") else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()  # fields from the state on: the name may hold spaces


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _temp_path(suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="omi-bench.", suffix=suffix)
    os.close(fd)
    return Path(name)


@dataclass
class Server:
    """A server process and its children (its session), started pinned to ``cores``."""

    name: str
    command: list[str]
    cores: str = SERVER_CORE
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log: Path = field(default_factory=lambda: _temp_path(".log"))

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                [*pinned(self.cores), *self.command],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its children (Triton's stubs, omi's workers) share its session
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """The server and every process of its session."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    if int(_stat(int(entry))[3]) == self.pid:  # field 6, the session id
                        found.append(int(entry))
        return found

    def rss(self) -> int:
        """Resident bytes of the whole session now."""
        return sum(_status_kib(pid, "VmRSS:") for pid in self.pids()) * 1024

    def reset_peak(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # the peak RSS (VmHWM) starts again from the RSS now

    def peak_rss(self) -> int:
        """Bytes: the sum of each session process's peak RSS since ``reset_peak``."""
        return sum(_status_kib(pid, "VmHWM:") for pid in self.pids()) * 1024

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError):
                fields = _stat(pid)
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # nothing of its session may outlive it
        with contextlib.suppress(OSError):
            self.log.unlink()  # failures quote its tail before the server is stopped

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def post(
    port: int, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def first_answer(server: Server, port: int, path: str, body: bytes, timeout: float = 180.0) -> float:
    """Seconds from the server's spawn to its first 200 answer to ``body``, polling every 5 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _, _ = post(port, path, body, {"Content-Type": "application/json"}, timeout=5)
            if status == 200:
                return time.perf_counter() - server.started_at
        time.sleep(0.005)
    raise RuntimeError(f"{server.name} gave no answer within {timeout:.0f}s:\n{server.log_tail()}")


def wait_port(server: Server, port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"{server.name} did not open port {port} within {timeout:.0f}s:\n{server.log_tail()}")


@contextlib.contextmanager
def body_file(body: bytes) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="omi-bench.", suffix=".body")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        yield Path(name)
    finally:
        os.unlink(name)


def wrk(
    port: int, path: str, body: Path, connections: int, seconds: float, content_type: str = "application/json",
    cores: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Requests/s and latency of ``wrk`` posting ``body`` on ``connections`` keep-alive connections
    (one request in flight on each). wrk counts whole seconds: at least 1."""
    command = [
        *(pinned(cores) if cores else []),
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(HERE / "wrk.lua"), f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_CONTENT_TYPE": content_type}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    line = next((line for line in out.splitlines() if line.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    if result["errors"] or result["status_errors"] or not result["requests"]:
        raise RuntimeError(f"wrk: {result['errors']} socket errors, {result['status_errors']} error statuses")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def h2load(port: int, body: Path, streams: int, seconds: float, min_reply: int) -> dict[str, float]:
    """Requests/s and the p50 latency of ``h2load`` posting one pre-encoded gRPC message with
    ``streams`` in flight on one connection. A gRPC error is an HTTP 200 with no message, so
    every reply must carry at least ``min_reply`` bytes of data on average."""
    warm = max(0.2, min(1.0, seconds / 3))
    with tempfile.NamedTemporaryFile(prefix="omi-bench.", suffix=".h2log") as log:
        command = [
            "h2load", "-t1", "-c1", f"-m{streams}", "-D", f"{int(seconds * 1000)}ms",
            f"--warm-up-time={int(warm * 1000)}ms", "-H", "content-type: application/grpc", "-H", "te: trailers",
            "-d", str(body), f"--log-file={log.name}",
            f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer",
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        latencies = sorted(int(line.split("\t")[2]) for line in Path(log.name).read_text().splitlines() if line)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    data = re.search(r"headers \(space savings [^)]*\), ([\d.]+\w*B)? ?\((\d+)\) data", out)
    if not (done and rate and data and latencies):
        raise RuntimeError(f"cannot read h2load's output:\n{out}")
    requests, succeeded = int(done.group(2)), int(done.group(3))
    if succeeded != requests or int(data.group(2)) < min_reply * requests:
        raise RuntimeError(f"h2load: {succeeded} of {requests} succeeded, {data.group(2)} bytes of replies:\n{out}")
    return {
        "requests": requests,
        "rps": float(rate.group(1)),
        "p50_us": float(latencies[len(latencies) // 2]),
        "p99_us": float(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]),
        "mean_us": statistics.fmean(latencies),
    }


def upload(mode: str, port: int, where: str, seconds: float, check: bool) -> dict[str, float]:
    """MB/s of 4 MiB request bodies posted one at a time by ``upload.py``."""
    command = [sys.executable, str(HERE / "upload.py"), mode, "127.0.0.1", str(port), where, str(seconds)]
    command += [] if check else ["--no-check"]
    out = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"upload.py {mode} failed:\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout))


def tool_versions() -> dict[str, str]:
    def first_line(command: Sequence[str]) -> str:
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError:
            return "missing"
        return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "?"

    return {"wrk": first_line(["wrk", "--version"]), "h2load": first_line(["h2load", "--version"])}
