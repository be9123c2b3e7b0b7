"""Benchmark ``omi serve`` against the bare transport in one run, on this machine: REST against a
bare Starlette route on uvicorn, gRPC against a bare ``grpc.aio`` handler.

The server runs on core 0 and the load generator on core 1 (where there are two). Latency is
the p50 with one request in flight; throughput is requests/s with 16 in flight; each ratio is
the median over several rounds (``BENCH_ROUNDS``, ``BENCH_SECONDS`` per measurement). The targets
(serving issue): latency <= 1.1x the baseline, throughput >= 0.8x, for the bundled example
(``examples/adder.py``, whose predict runs on the event loop). The same model with predict in the
thread pool is measured too, for information: the thread hand-off is the price of a predict that
may block. gRPC ratios are recorded without a target yet. Results go to ``bench/results.json``;
the exit code is 1 when a REST target is missed.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
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


def measure(name: str, command: list[str], port: int, load: list[str], seconds: float) -> dict[str, float]:
    """Start ``command`` on core 0, then run ``load`` (a load generator taking the number in
    flight and the seconds) on core 1 with 1 and with 16 in flight."""
    proc = subprocess.Popen(_pinned(0) + command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port, proc)
        load = [*_pinned(1), sys.executable, *load]
        latency = json.loads(subprocess.check_output([*load, "1", str(seconds)], cwd=ROOT))
        throughput = json.loads(subprocess.check_output([*load, "16", str(seconds)], cwd=ROOT))
    finally:
        proc.terminate()
        proc.wait(30)
    result = {"p50_us": latency["p50_us"], "p99_us": latency["p99_us"], "rps_16": throughput["rps"]}
    print(
        f"{name:>22}: p50 {result['p50_us']:7.0f} us   p99 {result['p99_us']:7.0f} us   "
        f"{result['rps_16']:8.0f} req/s at 16 in flight"
    )
    return result


def _serve(target: str, protocol: str) -> list[str]:
    return [sys.executable, "-m", "omi_adapters.cli", "serve", target, "--host", "127.0.0.1",
            f"--{'http' if protocol == 'rest' else 'grpc'}-port", "{port}", "--protocols", protocol,
            "--log-level", "warning"]  # fmt: skip


def _ratios(served: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    return {"latency": served["p50_us"] / baseline["p50_us"], "throughput": served["rps_16"] / baseline["rps_16"]}


def main() -> int:
    seconds = float(os.environ.get("BENCH_SECONDS", "3"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    rest = [str(HERE / "load.py"), "127.0.0.1", "{port}", PATH, BODY]
    grpc = [str(HERE / "grpc_load.py"), "127.0.0.1:{port}"]
    runs = {
        "rest_baseline": ([sys.executable, str(HERE / "baseline.py"), "{port}"], rest),
        "rest_omi_serve": (_serve("examples/adder.py", "rest"), rest),
        "rest_predict_in_thread": (_serve("bench/threaded_adder.py", "rest"), rest),
        "grpc_baseline": ([sys.executable, str(HERE / "grpc_baseline.py"), "{port}"], grpc),
        "grpc_omi_serve": (_serve("examples/adder.py", "grpc"), grpc),
    }
    # This machine's speed drifts by tens of percent from minute to minute: each round measures
    # every server back to back, ratios are taken within a round, and the median round counts.
    rounds_seen: list[dict[str, dict[str, float]]] = []
    for number in range(1, rounds + 1):
        print(f"round {number} of {rounds}")
        results = {}
        for name, (command, load) in runs.items():
            port = _free_port()
            command, load = ([part.replace("{port}", str(port)) for part in parts] for parts in (command, load))
            results[name] = measure(name.replace("_", " "), command, port, load, seconds)
        rounds_seen.append(results)
    ratios = {
        protocol: {
            key: statistics.median(
                _ratios(r[f"{protocol}_omi_serve"], r[f"{protocol}_baseline"])[key] for r in rounds_seen
            )
            for key in ("latency", "throughput")
        }
        for protocol in ("rest", "grpc")
    }
    rest_ratios = ratios["rest"]
    ok = (
        rest_ratios["latency"] <= TARGETS["latency_ratio_max"]
        and rest_ratios["throughput"] >= TARGETS["throughput_ratio_min"]
    )
    for protocol, ratio in ratios.items():
        print(
            f"{protocol:>5} ratios (median of {rounds} rounds): latency {ratio['latency']:.2f}x   throughput {ratio['throughput']:.2f}x"
        )
    print(f"REST targets (latency <= 1.1x, throughput >= 0.8x): {'met' if ok else 'MISSED'}")
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "seconds": seconds,
        "ratios": ratios,
        "targets": TARGETS,
        "rounds": rounds_seen,
    }
    (HERE / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
