"""Benchmark ``omi serve`` (REST) against a bare Starlette route in one run, on this machine.

The server runs on core 0 and the load generator on core 1 (where there are two). Latency is
the p50 with one request in flight; throughput is requests/s with 16 in flight. The targets
(serving issue): latency <= 1.1x the baseline, throughput >= 0.8x, for the bundled example
(``examples/adder.py``, whose predict runs on the event loop). The same model with predict in the
thread pool is measured too, for information: the thread hand-off is the price of a predict that
may block. Results go to ``bench/results.json``; the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BODY = '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[1.0,2.0,3.0,4.0]}]}'
PATH = "/v2/models/adder/infer"
TARGETS = {"latency_ratio_max": 1.1, "throughput_ratio_min": 0.8}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 and _has("taskset") else []


def _has(tool: str) -> bool:
    return any((Path(p) / tool).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("server did not start")


def measure(name: str, command: list[str], port: int, seconds: float) -> dict[str, float]:
    proc = subprocess.Popen(_pinned(0) + command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port, proc)
        load = [*_pinned(1), sys.executable, str(HERE / "load.py"), "127.0.0.1", str(port), PATH, BODY]
        latency = json.loads(subprocess.check_output([*load, "1", str(seconds)]))
        throughput = json.loads(subprocess.check_output([*load, "16", str(seconds)]))
    finally:
        proc.terminate()
        proc.wait(30)
    result = {"p50_us": latency["p50_us"], "p99_us": latency["p99_us"], "rps_16": throughput["rps"]}
    print(
        f"{name:>10}: p50 {result['p50_us']:7.0f} us   p99 {result['p99_us']:7.0f} us   {result['rps_16']:8.0f} req/s at 16 in flight"
    )
    return result


def _serve(target: str, port: int) -> list[str]:
    return [sys.executable, "-m", "omi_adapters.cli", "serve", target, "--host", "127.0.0.1",
            "--http-port", str(port), "--protocols", "rest", "--log-level", "warning"]  # fmt: skip


def main() -> int:
    seconds = float(os.environ.get("BENCH_SECONDS", "5"))
    port = _free_port()
    baseline = measure("baseline", [sys.executable, str(HERE / "baseline.py"), str(port)], port, seconds)
    omi = measure("omi serve", _serve("examples/adder.py", port := _free_port()), port, seconds)
    threaded = measure("in thread", _serve("bench/threaded_adder.py", port := _free_port()), port, seconds)
    ratios = {"latency": omi["p50_us"] / baseline["p50_us"], "throughput": omi["rps_16"] / baseline["rps_16"]}
    ok = ratios["latency"] <= TARGETS["latency_ratio_max"] and ratios["throughput"] >= TARGETS["throughput_ratio_min"]
    print(
        f"    ratios: latency {ratios['latency']:.2f}x (<= 1.1)   throughput {ratios['throughput']:.2f}x (>= 0.8)   {'met' if ok else 'MISSED'}"
    )
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "seconds": seconds,
        "baseline": baseline,
        "omi_serve": omi,
        "omi_serve_predict_in_thread": threaded,
        "ratios": ratios,
        "targets": TARGETS,
    }
    (HERE / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
