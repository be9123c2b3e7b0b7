"""``make bench``: every figure of the "Fast and scaled" table in one run, against the same
baselines, written to ``bench/RESULTS.md`` (and ``bench/results.json``).

Servers, each started pinned to core 0 with the load generators on core 1:

- ``bare_rest``: a bare Starlette route on uvicorn answering a fixed reply (``baseline.py``);
- ``bare_grpc``: a bare ``grpc.aio`` handler answering fixed bytes (``grpc_baseline.py``);
- ``minimal``: the smallest correct OIP handler, raw ASGI + orjson + numpy (``minimal_oip.py``);
- ``triton``: tritonserver serving ``omi build triton examples/adder.py`` (Python backend);
- ``omi``: ``omi serve examples/adder.py`` (predict on the event loop, ``run_in_thread=False``);
- ``omi_thread``: ``omi serve bench/threaded_adder.py`` (a plain sync predict, in a thread).

Each round starts every server and measures each figure on every server in three slices, the
servers in turn within each slice (their order turning from round to round); a server's figure
is the median of its slices. It stops them, then measures the cold starts (five starts of each
server in turn, the JSON memory figure on its last), the two scaling figures and the streaming
figures (tokens per second and time to first token of a generator yielding 10,000 small
responses, over ``generate_stream`` and ``ModelStreamInfer``). Ratios are taken within a round;
the report gives the median ratio over the rounds and the median absolute figures.

Knobs: ``BENCH_SECONDS`` (per measurement, its slices together; default 3), ``BENCH_ROUNDS``
(default 5), ``BENCH_QUICK=1`` (0.3 s each, one round, no Triton: checks only that every figure is
produced; the results go to a temporary folder unless ``BENCH_OUT`` names one), ``BENCH_TRITON=0``
(skip Triton), ``BENCH_OUT`` (where RESULTS.md and results.json go; default bench/),
``BENCH_PROFILES=0`` (no py-spy profiles of the missed targets, which otherwise close the run:
``profiles.py``).

Exit code: 0 when every figure was measured, met or missed (RESULTS.md says which); 1 when a
measurement failed (a server did not start or answered wrongly).
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import harness
import payloads
import profiles as profiles_module
import report
import streaming
from harness import BOTH_CORES, HERE, ROOT, Server

PY = sys.executable
ADDER_PATH = payloads.INFER_PATH.format(model="adder")
SMALL_BODY = payloads.small_json()
GRPC_SMALL = payloads.grpc_frame(payloads.grpc_request(payloads.SMALL_X))
#: A gRPC reply to the small request carries at least its frame and 16 bytes of data.
GRPC_MIN_REPLY = 5 + 16


@dataclass
class Spec:
    """One server of the comparison: what it serves and how it is started on given ports."""

    key: str
    label: str
    protocols: frozenset[str]
    command: Callable[[dict[str, int]], list[str]]
    check: bool = True  # its answers are Y = X + 1 (the bare baselines answer a fixed reply)
    env: Callable[[], dict[str, str] | None] = lambda: None

    def server(self) -> tuple[Server, dict[str, int]]:
        ports = {"http": harness.free_port(), "grpc": harness.free_port(), "omi": harness.free_port(),
                 "metrics": harness.free_port()}  # fmt: skip
        return Server(self.key, self.command(ports), env=self.env()), ports


def omi_serve(targets: str | list[str], *extra: str) -> Callable[[dict[str, int]], list[str]]:
    targets = [targets] if isinstance(targets, str) else targets
    return lambda p: [
        PY, "-m", "omi_adapters.cli", "serve", *targets, "--host", "127.0.0.1", "--http-port", str(p["http"]),
        "--grpc-port", str(p["grpc"]), "--omi-port", str(p["omi"]), "--log-level", "warning", *extra,
    ]  # fmt: skip


REST, GRPC = frozenset({"rest"}), frozenset({"grpc"})
BOTH = REST | GRPC
SPECS = {
    "bare_rest": Spec("bare_rest", "bare Starlette", REST, lambda p: [PY, str(HERE / "baseline.py"), str(p["http"])],
                      check=False),
    "bare_grpc": Spec("bare_grpc", "bare grpc.aio", GRPC, lambda p: [PY, str(HERE / "grpc_baseline.py"),
                      str(p["grpc"])], check=False),
    "minimal": Spec("minimal", "minimal OIP", REST, lambda p: [PY, str(HERE / "minimal_oip.py"), str(p["http"])]),
    "omi": Spec("omi", "omi serve", BOTH, omi_serve("examples/adder.py")),
    "omi_thread": Spec("omi_thread", "omi serve (threaded)", BOTH, omi_serve("bench/threaded_adder.py")),
}  # fmt: skip


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    unit: str
    protocol: str
    lower_is_better: bool
    measure: Callable[[Spec, dict[str, int], Path, float], dict[str, Any]]
    value: str  # the key of the measurement's result that is the figure


Measure = Callable[[Spec, dict[str, int], Path, float], dict[str, Any]]


def _rest_small(connections: int) -> Measure:
    def measure(spec: Spec, ports: dict[str, int], files: Path, seconds: float) -> dict[str, Any]:
        return harness.wrk(ports["http"], ADDER_PATH, files / "small.json", connections, seconds)

    return measure


def _grpc_small(streams: int) -> Measure:
    def measure(spec: Spec, ports: dict[str, int], files: Path, seconds: float) -> dict[str, Any]:
        return harness.h2load(ports["grpc"], files / "grpc_small.bin", streams, seconds, GRPC_MIN_REPLY)

    return measure


def _upload(mode: str) -> Measure:
    def measure(spec: Spec, ports: dict[str, int], files: Path, seconds: float) -> dict[str, Any]:
        port, where = (ports["grpc"], "adder") if mode == "grpc-raw" else (ports["http"], ADDER_PATH)
        return harness.upload(mode, port, where, seconds, spec.check)

    return measure


FIGURES = [
    Figure("rest_p50", "REST small p50 (1 in flight)", "us", "rest", True, _rest_small(1), "p50_us"),
    Figure("rest_rps", "REST small RPS, 16 in flight (wrk)", "req/s", "rest", False, _rest_small(16), "rps"),
    Figure("grpc_p50", "gRPC small p50 (1 in flight)", "us", "grpc", True, _grpc_small(1), "p50_us"),
    Figure("grpc_rps", "gRPC small RPS, 16 in flight (h2load)", "req/s", "grpc", False, _grpc_small(16), "rps"),
    Figure("rest_binary", "REST 4 MiB binary", "MB/s", "rest", False, _upload("rest-binary"), "mb_s"),
    Figure("rest_json", "REST 4 MiB JSON", "MB/s", "rest", False, _upload("rest-json"), "mb_s"),
    Figure("grpc_raw", "gRPC 4 MiB raw", "MB/s", "grpc", False, _upload("grpc-raw"), "mb_s"),
]


@dataclass
class Run:
    seconds: float
    rounds: int
    quick: bool
    files: Path
    specs: dict[str, Spec]
    triton_note: str
    #: round -> figure -> server -> measurement (a dict with "value"), or {"error": text}
    data: list[dict[str, dict[str, dict[str, Any]]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def record(self, figure: str, server: str, result: dict[str, Any]) -> None:
        self.data[-1].setdefault(figure, {})[server] = result

    def attempt(self, figure: str, server: str, what: Callable[[], dict[str, Any]], value: str) -> None:
        self.record(figure, server, self.measure(figure, server, what, value))

    def measure(self, figure: str, server: str, what: Callable[[], dict[str, Any]], value: str) -> dict[str, Any]:
        """``what()``'s result with its ``value`` named, or ``{"error": ...}`` (printed, counted)."""
        try:
            result = what()
            result["value"] = result[value]
        except Exception as exc:  # noqa: BLE001 - any failure is recorded and the run goes on
            text = f"round {len(self.data)}, {figure}, {server}: {type(exc).__name__}: {exc}"
            print(f"  FAILED {text}", flush=True)
            self.errors.append(text)
            result = {"error": str(exc)[:2000]}
        else:
            print(f"  {figure:<14} {server:<12} {result['value']:>12.1f}", flush=True)
        return result


T = TypeVar("T")


def _turned(items: list[T], number: int) -> list[T]:
    """``items`` turned by ``number`` places: each server goes first in some round."""
    n = number % len(items) if items else 0
    return items[n:] + items[:n]


def _check_small(spec: Spec, ports: dict[str, int]) -> None:
    """The server answers the small request (with Y = X + 1, unless a bare baseline)."""
    if "rest" in spec.protocols:
        status, headers, body = harness.post(
            ports["http"], ADDER_PATH, SMALL_BODY, {"Content-Type": "application/json"}
        )
        if status != 200:
            raise RuntimeError(f"{spec.key}: REST status {status}: {body[:300]!r}")
        if spec.check:
            payloads.check_rest_reply(payloads.SMALL_X, headers, body)
    if "grpc" in spec.protocols:
        import grpc

        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(payloads.GRPC_PATH)
            deadline = time.monotonic() + 60
            while True:
                try:
                    reply = call(payloads.grpc_request(payloads.SMALL_X), timeout=10)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        if spec.check:
            payloads.check_grpc_reply(payloads.SMALL_X, reply)


def _ready(spec: Spec, server: Server, ports: dict[str, int]) -> None:
    if "rest" in spec.protocols:
        harness.first_answer(server, ports["http"], ADDER_PATH, SMALL_BODY)
    else:
        harness.wait_port(server, ports["grpc"])
    _check_small(spec, ports)


def start_ready(spec: Spec, attempts: int = 3) -> tuple[Server, dict[str, int]]:
    """Start ``spec``'s server on free ports and wait until it answers correctly; again on
    other ports if it fails to start (another process may have taken a port meanwhile)."""
    for attempt in range(1, attempts + 1):
        server, ports = spec.server()
        server.start()
        try:
            _ready(spec, server, ports)
            return server, ports
        except Exception:
            server.stop()
            if attempt == attempts:
                raise
            print(f"  {spec.key} did not start, trying again", flush=True)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running(specs: list[Spec]) -> Iterator[dict[str, tuple[Server, dict[str, int]]]]:
    started: dict[str, tuple[Server, dict[str, int]]] = {}
    try:
        for spec in specs:
            started[spec.key] = start_ready(spec)
        yield started
    finally:
        for server, _ in started.values():
            server.stop()


def main_figures(run: Run, number: int) -> None:
    keys = [k for k in run.specs]
    print(f"round {number}: starting {', '.join(keys)}", flush=True)
    try:
        with running([run.specs[k] for k in keys]) as servers:
            # A short warm-up of each server's protocols before its figures count.
            for key in keys:
                spec, (_, ports) = run.specs[key], servers[key]
                warm = min(1.0, run.seconds)
                if "rest" in spec.protocols:
                    harness.wrk(ports["http"], ADDER_PATH, run.files / "small.json", 16, warm)
                if "grpc" in spec.protocols:
                    harness.h2load(ports["grpc"], run.files / "grpc_small.bin", 16, warm, GRPC_MIN_REPLY)
            idle_before = {k: s.cpu_seconds() for k, (s, _) in servers.items()}
            slices = 1 if run.quick else SLICES
            seconds = run.seconds / slices
            for figure in FIGURES:
                measured: dict[str, list[dict[str, Any]]] = {}
                for _ in range(slices):
                    for key in _turned(keys, number):
                        spec, (server, ports) = run.specs[key], servers[key]
                        if figure.protocol not in spec.protocols:
                            continue
                        others = {k: s.cpu_seconds() for k, (s, _) in servers.items() if k != key}

                        def measure(f: Figure = figure, sp: Spec = spec, p: dict[str, int] = ports) -> dict[str, Any]:
                            return f.measure(sp, p, run.files, seconds)

                        started = time.perf_counter()
                        result = run.measure(figure.key, key, measure, figure.value)
                        elapsed = time.perf_counter() - started
                        # CPU the other (idle) servers took meanwhile, on the same core: it should be ~0.
                        stolen = sum(s.cpu_seconds() - others[k] for k, (s, _) in servers.items() if k in others)
                        result["idle_cpu_share"] = stolen / elapsed if elapsed else 0.0
                        measured.setdefault(key, []).append(result)
                        server.check_alive()
                for key, parts in measured.items():
                    median = _median_of(parts)
                    median["idle_cpu_share"] = max(p["idle_cpu_share"] for p in parts)
                    run.record(figure.key, key, median)
            run.data[-1]["_cpu_seconds"] = {
                k: {"value": s.cpu_seconds() - idle_before[k]} for k, (s, _) in servers.items()
            }
    except Exception as exc:  # noqa: BLE001 - recorded; the run goes on with the next phase
        text = f"round {number}: servers: {type(exc).__name__}: {exc}"
        print(f"  FAILED {text}", flush=True)
        traceback.print_exc()
        run.errors.append(text)


#: Each figure of a round is measured in this many slices of ``BENCH_SECONDS / SLICES`` (wrk's
#: at least 1 s), the servers in turn within each slice, and a server's figure is the median of
#: its slices: this machine's speed drifts over seconds, and one measurement of each server,
#: taken seconds apart, counted that drift as a difference between them.
SLICES = 3


def _median_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from several measurements of it: the one of median value, with every
    measurement's value (``values``); the first error, if one failed."""
    failed = [p for p in parts if "error" in p]
    if failed:
        return dict(failed[0])
    ranked = sorted(parts, key=lambda p: float(p["value"]))
    result = dict(ranked[(len(ranked) - 1) // 2])
    result["values"] = [p["value"] for p in parts]
    return result


def _settle(port: int) -> None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/adder", timeout=30).close()
    except (urllib.error.URLError, OSError):
        pass  # a baseline without the route: nothing to wait for
    time.sleep(0.5)


def compile_bytecode() -> None:
    """Write the bytecode of omi_adapters and the models served, as installing a wheel does.

    The checkout is installed editable, and where ``PYTHONDONTWRITEBYTECODE`` is set (CI
    images often set it) every start of ``omi serve`` would compile its modules again, about
    0.13 s here, which no installed omi-adapters does; the baselines' libraries come compiled.
    """
    for folder in ("omi_adapters", "examples", "bench"):
        compileall.compile_dir(str(ROOT / folder), quiet=1)


#: Starts of each server per round, taken in turn: one start lasts half a second, and one
#: moment of other work on the machine moved a single start's ratio by a third.
COLD_STARTS = 5


def cold_starts(run: Run, number: int) -> None:
    """Spawn each REST server afresh, in turn, ``COLD_STARTS`` times: the median of the seconds
    to its first answer; then, on its last start, the memory its process (all of its session)
    gains while it decodes 4 MiB JSON requests, over the body's size."""
    body = len(payloads.large_json())
    keys = _turned([k for k, s in run.specs.items() if "rest" in s.protocols], number)
    starts = 1 if run.quick else COLD_STARTS
    measured: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for start in range(starts):
        for key in keys:
            if any("error" in p for p in measured[key]):
                continue  # a server that failed to start is not started again
            spec = run.specs[key]
            server, ports = spec.server()

            def cold(server: Server = server, ports: dict[str, int] = ports) -> dict[str, Any]:
                server.start()
                return {"seconds": harness.first_answer(server, ports["http"], ADDER_PATH, SMALL_BODY)}

            try:
                measured[key].append(run.measure("cold_start", key, cold, "seconds"))
                if start == starts - 1 and "error" not in measured[key][-1]:
                    _cold_memory(run, spec, server, ports, body)
            finally:
                server.stop()
    for key in keys:
        run.record("cold_start", key, _median_of(measured[key]))


def _cold_memory(run: Run, spec: Spec, server: Server, ports: dict[str, int], body: int) -> None:
    def memory() -> dict[str, Any]:
        server.check_alive()
        # The steady state: omi serve builds its metadata and docs routes (FastAPI) in a thread
        # after it starts listening; one metadata request waits for that, so the growth measured
        # is the requests', not the start-up's.
        _settle(ports["http"])
        before = server.rss()
        server.reset_peak()
        result = harness.upload("rest-json", ports["http"], ADDER_PATH, run.seconds, spec.check)
        peak = server.peak_rss()
        result.update(rss_before=before, peak_rss=peak, growth_x_body=(peak - before) / body)
        return result

    run.attempt("json_memory", spec.key, memory, "growth_x_body")


def scaling(run: Run, number: int) -> None:
    one_row = payloads.small_json()
    models = HERE / "scaling_models.py"
    # Batching: one process serving the same 2 ms, one-call-at-a-time model twice, with and
    # without max_batch_size=16; 16 in flight, on core 0 with wrk on core 1.
    spec = Spec("batching", "omi serve", REST, omi_serve([f"{models}:one_at_a_time", f"{models}:batched"],
                                                          "--protocols", "rest"))  # fmt: skip
    server, ports = spec.server()
    try:
        server.start()
        harness.first_answer(server, ports["http"], payloads.INFER_PATH.format(model="batched"), one_row)
        with harness.body_file(one_row) as body:
            for model in _turned(["one_at_a_time", "batched"], number):
                path = payloads.INFER_PATH.format(model=model)
                load = functools.partial(harness.wrk, ports["http"], path, body, 16, run.seconds)
                run.attempt(f"batching_{model}", "omi", load, "rps")
    except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
        run.errors.append(f"round {number}, batching: {exc}")
        print(f"  FAILED batching: {exc}", flush=True)
    finally:
        server.stop()
    # Workers: the 1 ms GIL-holding model under --workers 1 and 2, the server allowed both cores
    # and wrk unpinned (it needs little CPU at these rates).
    path = payloads.INFER_PATH.format(model="gil_burner")
    for workers in _turned(["1", "2"], number):
        spec = Spec(f"workers_{workers}", "omi serve", REST,
                    omi_serve(f"{models}:gil_burner", "--workers", workers, "--log-level", "info"))  # fmt: skip
        server, ports = spec.server()
        server.cores = BOTH_CORES
        try:
            server.start()
            harness.first_answer(server, ports["http"], path, one_row)
            if workers != "1":  # the second worker starts once the first serves: wait for both
                _wait_workers(server, int(workers))
            with harness.body_file(one_row) as body:
                load = functools.partial(harness.wrk, ports["http"], path, body, 16, run.seconds, cores=BOTH_CORES)
                run.attempt(f"workers_{workers}", "omi", load, "rps")
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            run.errors.append(f"round {number}, workers {workers}: {exc}")
            print(f"  FAILED workers {workers}: {exc}", flush=True)
        finally:
            server.stop()


#: What metrics and the access log cost: the same small requests with both off and both on.
OBSERVE = {"off": ("--no-metrics", "--no-access-log"), "on": ("--metrics", "--access-log")}
OBSERVE_FIGURES = (
    ("rest_p50", "REST small p50 (1 in flight)", "us", "p50_us"),
    ("rest_rps", "REST small RPS, 16 in flight (wrk)", "req/s", "rps"),
    ("grpc_rps", "gRPC small RPS, 16 in flight (h2load)", "req/s", "rps"),
)


def observability(run: Run, number: int) -> None:
    """``omi serve examples/adder.py`` with metrics and the access log both off, then both on
    (the order turns each round), each started afresh on core 0; the access log goes to a file,
    as a container runtime collects stderr."""
    for mode in _turned(list(OBSERVE), number):
        spec = Spec(f"observe_{mode}", "omi serve", BOTH, omi_serve("examples/adder.py", *OBSERVE[mode]))
        server, ports = spec.server()
        try:
            server.start()
            harness.first_answer(server, ports["http"], ADDER_PATH, SMALL_BODY)
            harness.wrk(ports["http"], ADDER_PATH, run.files / "small.json", 16, min(1.0, run.seconds))
            for key, _, _, value in OBSERVE_FIGURES:
                measure = _rest_small(1 if key == "rest_p50" else 16) if key.startswith("rest") else _grpc_small(16)
                load = functools.partial(measure, spec, ports, run.files, run.seconds)
                run.attempt(f"observe_{key}_{mode}", "omi", load, value)
            server.check_alive()
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            run.errors.append(f"round {number}, observability {mode}: {exc}")
            print(f"  FAILED observability {mode}: {exc}", flush=True)
        finally:
            server.stop()


#: Each target's profile: the load that shows where omi serve's time goes when it is missed.
PROFILED = {
    "rest_p50": "rest_small", "rest_rps": "rest_small", "rest_rps_minimal": "rest_small",
    "grpc_p50": "grpc_small", "grpc_rps": "grpc_small",
    "rest_binary": "rest-binary", "rest_json": "rest-json", "json_memory": "rest-json", "grpc_raw": "grpc-raw",
    "cold_start": "cold_start", "stream_grpc_tps": "grpc_stream",
}  # fmt: skip
PROFILE_TITLES = {
    "rest_small": "REST small requests, 16 in flight (wrk)",
    "grpc_small": "gRPC small requests, 16 in flight (h2load)",
    "rest-binary": "REST 4 MiB binary uploads",
    "rest-json": "REST 4 MiB JSON uploads",
    "grpc-raw": "gRPC 4 MiB raw uploads",
    "cold_start": "cold start to first answer",
    "grpc_stream": "ModelStreamInfer, one stream of 10,000 tokens at a time (bench/stream_models.py)",
}


def profile_missed(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """A py-spy profile of omi serve (adder; the streaming model for the stream) under the load of
    each missed target (one per load)."""
    kinds = list(
        dict.fromkeys(PROFILED[t["key"]] for t in summary["targets"] if t["met"] is False and t["key"] in PROFILED)
    )
    spec = run.specs["omi"]
    profiles: dict[str, Any] = {}
    for kind in kinds:
        print(f"profile: {PROFILE_TITLES[kind]}", flush=True)
        entry: dict[str, Any] = {"title": PROFILE_TITLES[kind]}
        try:
            if kind == "cold_start":
                ports = {"http": harness.free_port(), "grpc": harness.free_port(), "omi": harness.free_port()}
                entry.update(profiles_module.import_times(spec.command(ports), ports["http"], ADDER_PATH, SMALL_BODY))
            elif kind == "grpc_stream":
                server, ports = STREAMS.server()
                server.start()
                try:
                    harness.wait_port(server, ports["grpc"])
                    load = functools.partial(streaming.measure, "grpc", ports["grpc"], run.seconds)
                    load()  # warm-up, unsampled
                    entry.update(profiles_module.record(server, load, run.seconds))
                finally:
                    server.stop()
            else:
                server, ports = spec.server()
                server.start()
                try:
                    harness.first_answer(server, ports["http"], ADDER_PATH, SMALL_BODY)
                    if kind == "rest_small":
                        load = functools.partial(_rest_small(16), spec, ports, run.files, run.seconds)
                    elif kind == "grpc_small":
                        load = functools.partial(_grpc_small(16), spec, ports, run.files, run.seconds)
                    else:
                        load = functools.partial(_upload(kind), spec, ports, run.files, run.seconds)
                    load()  # warm-up, unsampled
                    entry.update(profiles_module.record(server, load, run.seconds))
                finally:
                    server.stop()
        except Exception as exc:  # noqa: BLE001 - a profile that fails is said so; the figures stand
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"  profile failed: {entry['error']}", flush=True)
        profiles[kind] = entry
    return profiles


#: The server of the streaming figures.
STREAMS = Spec("streams", "omi serve", BOTH, omi_serve(str(HERE / "stream_models.py"), "--protocols", "rest,grpc"))


def streams(run: Run, number: int) -> None:
    """Tokens per second and time to first token of one stream of 10,000 small responses
    (``bench/stream_models.py``, a plain sync generator) over SSE and over the gRPC stream; the
    gRPC stream of the bare grpc.aio baseline too (fixed replies: grpcio's limit)."""
    server, ports = STREAMS.server()
    bare, bare_ports = SPECS["bare_grpc"].server()
    try:
        server.start()
        bare.start()
        harness.wait_port(server, ports["http"])
        harness.wait_port(server, ports["grpc"])
        harness.wait_port(bare, bare_ports["grpc"])
        runs = [
            ("sse", "omi", ports["http"]),
            ("grpc", "omi", ports["grpc"]),
            ("grpc", "bare_grpc", bare_ports["grpc"]),
        ]
        for name, key, port in _turned(runs, number):
            load = functools.partial(streaming.measure, "rest" if name == "sse" else "grpc", port, run.seconds)
            run.attempt(f"stream_{name}_tps", key, load, "tokens_per_s")
            result = run.data[-1][f"stream_{name}_tps"][key]
            if "error" not in result:
                run.attempt(f"stream_{name}_ttft", key, lambda r=result: dict(r), "ttft_ms")
        server.check_alive()
        bare.check_alive()
    except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
        run.errors.append(f"round {number}, streams: {exc}")
        print(f"  FAILED streams: {exc}", flush=True)
    finally:
        server.stop()
        bare.stop()


def _wait_workers(server: Server, count: int, timeout: float = 120.0) -> None:
    """Wait until the supervisor says (at log level info) that ``count`` workers serve."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        if server.log.read_text(errors="replace").count(") is serving") >= count:
            return
        time.sleep(0.05)
    raise RuntimeError(f"--workers {count}: not every worker came up:\n{server.log_tail()}")


def triton_spec(quick: bool, folder: Path) -> tuple[Spec | None, str]:
    """Triton serving the adder's `omi build triton` repository, if tritonserver can be had the
    way the test tooling installs it (scripts/fetch_tritonserver.py, into .tools/)."""
    if quick:
        return None, "skipped in quick mode"
    if os.environ.get("BENCH_TRITON", "1") == "0":
        return None, "skipped (BENCH_TRITON=0)"
    try:
        import importlib.util

        loader = importlib.util.spec_from_file_location(
            "fetch_tritonserver", ROOT / "scripts" / "fetch_tritonserver.py"
        )
        assert loader is not None and loader.loader is not None
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        installation = module.fetch()
        from omi_triton.server import WHEEL  # imported by the fetch script

        repo = folder / "triton-repo"
        built = subprocess.run([PY, "-m", "omi_adapters.cli", "build", "triton", str(ROOT / "examples" / "adder.py"),
                                "--out", str(repo)], check=False, capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        if built.returncode != 0:
            return None, f"omi build triton failed: {built.stderr.strip()}"
    except Exception as exc:  # noqa: BLE001 - without Triton the run goes on and says why
        return None, f"tritonserver could not be installed or set up: {type(exc).__name__}: {exc}"

    def command(p: dict[str, int]) -> list[str]:
        return list(installation.command(repo, p["http"], p["grpc"], p["metrics"]))

    spec = Spec("triton", "Triton", BOTH, command, env=lambda: installation.environment())
    return spec, f"tritonserver from {WHEEL} (installed into .tools/ as the tests do), Python backend"


def main() -> int:
    quick = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
    seconds = float(os.environ.get("BENCH_SECONDS", "0.3" if quick else "3"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "1" if quick else "5"))
    out = Path(os.environ.get("BENCH_OUT") or (tempfile.mkdtemp(prefix="omi-bench-quick.") if quick else HERE))
    for tool in ("wrk", "h2load", "taskset"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing (make bench installs wrk and nghttp2-client)", file=sys.stderr)
            return 1
    harness.pin_self()
    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="omi-bench.") as files_dir:
        files = Path(files_dir)
        (files / "small.json").write_bytes(SMALL_BODY)
        (files / "grpc_small.bin").write_bytes(GRPC_SMALL)
        payloads.large_json()  # built once, before anything is timed
        compile_bytecode()
        specs = dict(SPECS)
        triton, triton_note = triton_spec(quick, files)
        if triton is not None:
            specs = {**{k: v for k, v in SPECS.items() if not k.startswith("omi")}, "triton": triton,
                     **{k: v for k, v in SPECS.items() if k.startswith("omi")}}  # fmt: skip
        print(f"bench: {rounds} round(s) of {seconds:g} s per measurement; Triton: {triton_note}", flush=True)
        run = Run(seconds, rounds, quick, files, specs, triton_note)
        for number in range(1, rounds + 1):
            run.data.append({})
            main_figures(run, number)
            cold_starts(run, number)
            scaling(run, number)
            observability(run, number)
            streams(run, number)
        summary = report.summarize({"servers": specs, "rounds_data": run.data}, FIGURES, OBSERVE_FIGURES)
        profiles = profile_missed(run, summary) if os.environ.get("BENCH_PROFILES", "1") != "0" else {}
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "duration_s": round(time.time() - started),
        "quick": quick,
        "seconds": seconds,
        "rounds": rounds,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "pinned": harness.TWO_CORES,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "tools": harness.tool_versions(),
        "triton": triton_note,
        "servers": {k: s.label for k, s in specs.items()},
        "errors": run.errors,
        "rounds_data": run.data,
    }
    record["summary"] = report.summarize(record, FIGURES, OBSERVE_FIGURES)
    record["profiles"] = profiles
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=2, default=_plain) + "\n")
    (out / "RESULTS.md").write_text(report.markdown(record))
    print(report.console(record))
    print(f"bench: wrote {out / 'RESULTS.md'} and {out / 'results.json'}")
    missing = report.missing(record)
    if missing:
        print(f"bench: figures not produced: {', '.join(missing)}", file=sys.stderr)
    if run.errors:
        print("bench: measurements failed:\n  " + "\n  ".join(run.errors), file=sys.stderr)
    return 1 if (missing or run.errors) else 0


def _plain(value: object) -> object:
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return str(value)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


if __name__ == "__main__":
    sys.exit(main())
