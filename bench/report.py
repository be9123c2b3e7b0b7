"""The figures of a ``bench/run.py`` run: medians, ratios within each round, the targets met or
missed, and ``RESULTS.md``."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import profiles

#: The columns of the main table, left to right (bare is bare_rest or bare_grpc by protocol).
COLUMNS = [("minimal", "minimal OIP"), ("triton", "Triton"), ("omi", "omi serve (adder)"),
           ("omi_thread", "omi serve (threaded)")]  # fmt: skip
TARGET_SERVER = "omi"


#: The streaming figures (omi serve; the gRPC ones of the bare grpc.aio baseline too): key, title, unit, lower is better.
STREAM_ROWS = [
    ("stream_sse_tps", "generate_stream (SSE): tokens/s, 10,000 small responses", "tok/s", False),
    ("stream_sse_ttft", "generate_stream (SSE): time to first token", "ms", True),
    ("stream_grpc_tps", "ModelStreamInfer: tokens/s, 10,000 small responses", "tok/s", False),
    ("stream_grpc_ttft", "ModelStreamInfer: time to first token", "ms", True),
]


def _bare(protocol: str) -> str:
    return "bare_rest" if protocol == "rest" else "bare_grpc"


def _values(record: dict[str, Any], figure: str, server: str) -> list[float | None]:
    out: list[float | None] = []
    for data in record["rounds_data"]:
        result = data.get(figure, {}).get(server)
        out.append(None if result is None or "value" not in result else float(result["value"]))
    return out


def _on_off(record: dict[str, Any], off: str, on: str) -> dict[str, Any]:
    """omi serve's figure ``off`` and ``on`` (medians) and ``on / off`` in each round, and their median."""
    a, b = _values(record, off, "omi"), _values(record, on, "omi")
    ratios = [y / x for x, y in zip(a, b, strict=True) if x and y is not None]
    return {
        "off": _median(a),
        "on": _median(b),
        "ratios": ratios,
        "ratio": statistics.median(ratios) if ratios else None,
    }


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratios(record: dict[str, Any], figure: str, server: str, reference: str) -> list[float]:
    pairs = zip(_values(record, figure, server), _values(record, figure, reference), strict=True)
    return [a / b for a, b in pairs if a is not None and b]


def summarize(record: dict[str, Any], figures: Sequence[Any], observe: Sequence[Any] = ()) -> dict[str, Any]:
    servers = list(record["servers"])
    summary: dict[str, Any] = {"figures": {}}
    rows = [(f.key, f.title, f.unit, f.protocol, f.lower_is_better) for f in figures]
    rows.append(("cold_start", "cold start to first answer", "s", "rest", True))
    rows.append(("json_memory", "REST 4 MiB JSON: peak RSS growth / body", "x body", "rest", True))
    rows += [(key, title, unit, "stream", lower) for key, title, unit, lower in STREAM_ROWS]
    for key, title, unit, protocol, lower in rows:
        entry: dict[str, Any] = {"title": title, "unit": unit, "protocol": protocol, "lower_is_better": lower,
                                 "bare": _bare(protocol), "servers": {}}  # fmt: skip
        for server in servers:
            values = _values(record, key, server)
            if not any(v is not None for v in values):
                continue
            # Memory growth is an absolute bound: no ratios for it.
            ratios = _ratios(record, key, server, _bare(protocol)) if key != "json_memory" else []
            to_minimal = _ratios(record, key, server, "minimal") if protocol == "rest" and key != "json_memory" else []
            entry["servers"][server] = {
                # memory is a bound: the worst round counts; everything else, the median round
                "median": max(v for v in values if v is not None) if key == "json_memory" else _median(values),
                "values": values,
                "ratio_to_bare": statistics.median(ratios) if ratios else None,
                "ratios_to_bare": ratios,
                "ratio_to_minimal": statistics.median(to_minimal) if to_minimal else None,
                "ratios_to_minimal": to_minimal,
            }
        summary["figures"][key] = entry
    scaling = {}
    for name, off, on, what in (
        ("batching", "batching_one_at_a_time", "batching_batched", "max_batch_size=16 against none"),
        ("workers", "workers_1", "workers_2", "--workers 2 against --workers 1"),
    ):
        pair = _on_off(record, off, on)
        scaling[name] = {"what": what, "off_rps": pair["off"], "on_rps": pair["on"], "ratios": pair["ratios"],
                         "ratio": pair["ratio"]}  # fmt: skip
    summary["scaling"] = scaling
    # What metrics and the access log cost: on / off within each round (no target, a figure to read).
    summary["observability"] = {
        key: {"title": title, "unit": unit, **_on_off(record, f"observe_{key}_off", f"observe_{key}_on")}
        for key, title, unit, _ in observe
    }
    summary["targets"] = _targets(summary)
    shares = [
        result["idle_cpu_share"]
        for data in record["rounds_data"]
        for figure in data.values()
        for result in figure.values()
        if isinstance(result, dict) and "idle_cpu_share" in result
    ]
    summary["idle_cpu_share_max"] = max(shares) if shares else None
    return summary


def _get(summary: dict[str, Any], figure: str, server: str, what: str) -> float | None:
    value = summary["figures"].get(figure, {}).get("servers", {}).get(server, {}).get(what)
    return None if value is None else float(value)


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    def ratio(figure: str, reference: str = "ratio_to_bare") -> Callable[[], float | None]:
        return lambda: _get(summary, figure, TARGET_SERVER, reference)

    def median(figure: str) -> Callable[[], float | None]:
        return lambda: _get(summary, figure, TARGET_SERVER, "median")

    checks: list[tuple[str, str, Callable[[], float | None], str, float]] = [
        ("rest_p50", "REST small p50, omi serve / bare", ratio("rest_p50"), "<=", 1.1),
        ("rest_rps", "REST small RPS, omi serve / bare", ratio("rest_rps"), ">=", 0.9),
        ("grpc_p50", "gRPC small p50, omi serve / bare", ratio("grpc_p50"), "<=", 1.2),
        ("grpc_rps", "gRPC small RPS, omi serve / bare", ratio("grpc_rps"), ">=", 0.9),
        ("rest_binary", "REST 4 MiB binary MB/s, omi serve / bare", ratio("rest_binary"), ">=", 0.8),
        ("rest_json", "REST 4 MiB JSON, omi serve MB/s", lambda: _get(summary, "rest_json", TARGET_SERVER, "median"),
         ">=", 100.0),
        ("json_memory", "REST 4 MiB JSON, omi serve peak RSS growth / body",
         lambda: _get(summary, "json_memory", TARGET_SERVER, "median"), "<=", 3.0),
        ("grpc_raw", "gRPC 4 MiB raw MB/s, omi serve / bare", ratio("grpc_raw"), ">=", 0.9),
        ("cold_start", "cold start, omi serve / bare", ratio("cold_start"), "<=", 2.0),
        ("rest_rps_minimal", "REST small RPS, omi serve (adder, on the loop) / minimal OIP",
         ratio("rest_rps", "ratio_to_minimal"), ">=", 0.7),
        ("batching", "batching on / off, RPS", lambda: summary["scaling"]["batching"]["ratio"], ">=", 5.0),
        ("workers", "--workers 2 / --workers 1, RPS", lambda: summary["scaling"]["workers"]["ratio"], ">=", 1.6),
        ("stream_sse_tps", "generate_stream tokens/s", median("stream_sse_tps"), ">=", 10_000.0),
        ("stream_sse_ttft", "generate_stream time to first token (ms)", median("stream_sse_ttft"), "<=", 5.0),
        ("stream_grpc_tps", "ModelStreamInfer tokens/s", median("stream_grpc_tps"), ">=", 10_000.0),
        ("stream_grpc_ttft", "ModelStreamInfer time to first token (ms)", median("stream_grpc_ttft"), "<=", 5.0),
    ]  # fmt: skip
    out = []
    for key, what, get, op, bound in checks:
        value = get()
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out.append({"key": key, "what": what, "value": value, "target": f"{op} {bound:g}", "met": met})
    return out


def missing(record: dict[str, Any]) -> list[str]:
    """Figures the run should have produced and did not (Triton's, when it was skipped, aside)."""
    summary = record["summary"]
    gone = []
    for key, entry in summary["figures"].items():
        for server in record["servers"]:
            wanted = server in ("bare_rest", "minimal", "triton", "omi", "omi_thread")
            if entry["protocol"] == "grpc":
                wanted = server in ("bare_grpc", "triton", "omi", "omi_thread")
            elif entry["protocol"] == "stream":
                wanted = server == "omi" or (server == "bare_grpc" and key.startswith("stream_grpc"))
            if wanted and server not in entry["servers"]:
                gone.append(f"{key}/{server}")
    gone += [t["key"] for t in summary["targets"] if t["value"] is None]
    gone += [f"observe_{key}" for key, o in summary.get("observability", {}).items() if o["ratio"] is None]
    return sorted(set(gone))


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "x body":
        return f"{value:.2f}x"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _cell(entry: dict[str, Any], server: str) -> str:
    data = entry["servers"].get(server)
    if data is None:
        return "—"
    text = _number(data["median"], entry["unit"])
    if data["ratio_to_bare"] is not None:
        text += f" ({data['ratio_to_bare']:.2f}x)"
    return text


def _verdict(met: bool | None) -> str:
    return "—" if met is None else ("met" if met else "**missed**")


def markdown(record: dict[str, Any]) -> str:
    summary = record["summary"]
    figures = summary["figures"]
    targets = {t["key"]: t for t in summary["targets"]}
    machine = record["machine"]
    servers = record["servers"]
    lines = [
        "# omi serve: fast and scaled",
        "",
        (
            f"Written by `make bench` ({'quick mode: figures checked for presence only' if record['quick'] else 'full run'})"
            f" on {record['date']}, in {record['duration_s'] / 60:.0f} min: {record['rounds']} round(s) of "
            f"{record['seconds']:g} s per measurement. Machine: {machine['cpus']} × {machine['cpu']}, Linux "
            f"{machine['kernel']}, Python {machine['python']}"
            f"{'' if machine.get('pinned', True) else ' (NOT pinned: cores 0 and 1 were not both available)'}; load average "
            f"{machine['loadavg_before'][0]:.2f} before, {machine['loadavg_after'][0]:.2f} after "
            "(other work on the machine makes the figures noisy; the ratios are taken within each round). "
            f"Tools: {record['tools']['wrk']}; {record['tools']['h2load']}. Triton: {record['triton']}."
        ),
        "",
        (
            "Each cell is the median over the rounds of the absolute figure, and in brackets the median "
            "over the rounds of its ratio to the bare baseline measured in the same round (bare Starlette for "
            "REST figures, bare grpc.aio for gRPC ones). Both answer a small request with a fixed small reply "
            "and a 4 MiB one with the fixed bytes omi serve answers it with (Y = X + 1, built once), so that "
            "the 4 MiB figures compare servers moving the same bytes both ways. The target is for omi serve "
            "on the bundled adder (`examples/adder.py`, predict on the event loop)."
        ),
        "",
        "| figure | bare | " + " | ".join(label for key, label in COLUMNS) + " | target | omi serve |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|---|",
    ]
    rows = [
        ("rest_p50", "REST small p50, 1 in flight (µs)", "rest_p50", "<= 1.1x"),
        ("rest_rps", "REST small RPS, 16 in flight (wrk)", "rest_rps", ">= 0.9x"),
        ("grpc_p50", "gRPC small p50, 1 in flight (µs)", "grpc_p50", "<= 1.2x"),
        ("grpc_rps", "gRPC small RPS, 16 in flight (h2load)", "grpc_rps", ">= 0.9x"),
        ("rest_binary", "REST 4 MiB binary (MB/s)", "rest_binary", ">= 0.8x"),
        ("rest_json", "REST 4 MiB JSON (MB/s; bare: no parse)", "rest_json", ">= 100 MB/s"),
        ("json_memory", "REST 4 MiB JSON: peak RSS growth / body", "json_memory", "<= 3x body"),
        ("grpc_raw", "gRPC 4 MiB raw (MB/s)", "grpc_raw", ">= 0.9x"),
        ("cold_start", "cold start to first answer (s)", "cold_start", "<= 2x"),
    ]
    for key, title, target_key, target in rows:
        entry = figures.get(key)
        if entry is None:
            continue
        bare = entry["servers"].get(entry["bare"])
        bare_text = _number(bare["median"], entry["unit"]) if bare else "—"
        cells = [_cell(entry, server) if server in servers else "n/a" for server, _ in COLUMNS]
        lines.append(f"| {title} | {bare_text} | " + " | ".join(cells) +
                     f" | {target} | {_verdict(targets[target_key]['met'])} |")  # fmt: skip
    lines += [
        "",
        "## omi serve against the smallest correct OIP handler",
        "",
        (
            "Ratios (median over the rounds, within each round) of omi serve's figure to that of "
            "`bench/minimal_oip.py`: a raw ASGI callable on uvicorn + httptools that parses the body with "
            "orjson, adds 1 with numpy and answers, with nothing else (no routing, limits or registry)."
        ),
        "",
        (
            "| figure | minimal OIP | omi serve (adder, `run_in_thread=False`) | omi serve (plain sync predict, "
            "in a thread) | target |"
        ),
        "|---|---|---|---|---|",
    ]
    for key, title, _, _ in rows:
        entry = figures.get(key)
        if entry is None or entry["protocol"] != "rest" or key == "json_memory":
            continue
        minimal = entry["servers"].get("minimal")
        cells = []
        for server in ("omi", "omi_thread"):
            ratio = entry["servers"].get(server, {}).get("ratio_to_minimal")
            cells.append("—" if ratio is None else f"{ratio:.2f}x")
        target = f">= 0.7x (adder): {_verdict(targets['rest_rps_minimal']['met'])}" if key == "rest_rps" else ""
        minimal_text = _number(minimal["median"], entry["unit"]) if minimal else "—"
        lines.append(f"| {title} | {minimal_text} | {cells[0]} | {cells[1]} | {target} |")
    scaling = summary["scaling"]
    lines += [
        "",
        "## Scaling",
        "",
        "| figure | off (req/s) | on (req/s) | ratio (median of rounds) | target | |",
        "|---|---|---|---|---|---|",
        (
            f"| batching: 2 ms predict, `max_concurrency=1`, 16 in flight, 1-row requests; `max_batch_size=16` "
            f"on against off | {_number(scaling['batching']['off_rps'])} | {_number(scaling['batching']['on_rps'])} | "
            f"{_ratio(scaling['batching']['ratio'])} | >= 5x | {_verdict(targets['batching']['met'])} |"
        ),
        (
            f"| workers: 1 ms GIL-holding predict, 16 in flight, both cores; `--workers 2` against `--workers 1` | "
            f"{_number(scaling['workers']['off_rps'])} | {_number(scaling['workers']['on_rps'])} | "
            f"{_ratio(scaling['workers']['ratio'])} | >= 1.6x | {_verdict(targets['workers']['met'])} |"
        ),
        "",
        "## What metrics and the access log cost",
        "",
        (
            "`omi serve examples/adder.py` with `--no-metrics --no-access-log` against "
            "`--metrics --access-log`, each started afresh, the access log written to a file."
        ),
        "",
        "| figure | both off | both on | on / off (median of rounds) |",
        "|---|---|---|---|",
        *(
            f"| {o['title']} | {_number(o['off'], o['unit'])} | {_number(o['on'], o['unit'])} | {_ratio(o['ratio'])} |"
            for o in summary.get("observability", {}).values()
        ),
        "",
        "## Streaming",
        "",
        (
            "`omi serve bench/stream_models.py`: a plain sync generator (run in one of the model's threads, "
            "as a user's is by default) yielding 10,000 one-element BYTES responses per request; one stream "
            "at a time, on core 0, read on core 1. The bare grpc.aio baseline answers the same gRPC request "
            "with as many fixed replies of the same size, each written as omi serve writes it "
            "(`context.write`): the limit of grpcio's streams. Medians over the rounds; the ratio is "
            "the median of omi serve's to the bare baseline's within each round."
        ),
        "",
        "| figure | bare grpc.aio | omi serve | target | |",
        "|---|---|---|---|---|",
    ]
    for key, title, unit, _ in STREAM_ROWS:
        servers = figures.get(key, {}).get("servers", {})
        data, bare = servers.get("omi"), servers.get("bare_grpc")
        value = f"{_number(data['median'] if data else None, unit)} {unit}"
        if data and data["ratio_to_bare"] is not None:
            value += f" ({_ratio(data['ratio_to_bare'])})"
        reference = f"{_number(bare['median'], unit)} {unit}" if bare else "—"
        lines.append(
            f"| {title} | {reference} | {value} | {targets[key]['target']} | {_verdict(targets[key]['met'])} |"
        )
    lines += [
        "",
        "## Spread over the rounds",
        "",
        "omi serve's (adder) ratio to the bare baseline in each round, to show how much the machine drifted.",
        "",
        "| figure | ratios by round |",
        "|---|---|",
    ]
    for key, title, _, _ in rows:
        data = figures.get(key, {}).get("servers", {}).get("omi")
        if data and data["ratios_to_bare"]:
            lines.append(f"| {title} | " + ", ".join(f"{r:.2f}" for r in data["ratios_to_bare"]) + " |")
    for name in ("batching", "workers"):
        if scaling[name]["ratios"]:
            lines.append(f"| {name} on / off | " + ", ".join(f"{r:.2f}" for r in scaling[name]["ratios"]) + " |")
    lines += ["", "## Targets", "", "| target | value | |", "|---|---|---|"]
    for t in summary["targets"]:
        value = "missing" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"| {t['what']} {t['target']} | {value} | {_verdict(t['met'])} |")
    idle = summary.get("idle_cpu_share_max")
    lines += ["", *profiles.markdown(record.get("profiles") or {})]
    lines += ["", METHOD.format(seconds=record["seconds"], rounds=record["rounds"]).strip(), ""]
    if idle is not None:
        lines += [f"The idle servers of a round took at most {idle:.1%} of a core during any measurement.", ""]
    if record["errors"]:
        lines += ["## Failed measurements", ""] + [f"- {e}" for e in record["errors"]] + [""]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def console(record: dict[str, Any]) -> str:
    lines = ["", "targets (omi serve):"]
    for t in record["summary"]["targets"]:
        value = "missing" if t["value"] is None else f"{t['value']:.3f}"
        verdict = "-" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(f"  {t['what']:<64} {value:>9}  (target {t['target']}): {verdict}")
    return "\n".join(lines)


METHOD = """
## How each figure is measured

Every server runs pinned to core 0 (`taskset -c 0`, its child processes too: Triton's Python
backend stub) and every load generator on core 1, except the workers figure, where the server is
allowed both cores and wrk is unpinned. Each round starts every server of the main table, checks
that it answers Y = X + 1 over REST and gRPC (the bare baselines answer a fixed reply and are not
checked), warms it up for a second, then measures each figure on every server in three slices
of a third of {seconds:g} s (quick mode: one slice; wrk counts whole seconds, at least 1), the
servers in turn within each slice and their order turning from round to round. A server's
figure in a round is the median of its slices, so that the machine's drift over seconds falls on
every server alike. Then the cold starts, then the scaling figures; rounds: {rounds}. The idle
servers of the round stay up meanwhile (results.json records the CPU they took during each
measurement, `idle_cpu_share`: about 0).

- **REST small p50 (1 in flight)**: `wrk -t1 -c1` posting the 1x4 FP32 JSON request
  (`bench/wrk.lua`), its median latency. wrk rather than a Python load generator: in a check on
  this machine, a Python (uvloop) client added about 40 µs to the bare route's p50, which would
  shrink every ratio toward 1.
- **REST small RPS, 16 in flight**: `wrk -t1 -c16` (16 keep-alive connections, one request in
  flight on each), requests per second; any socket error or error status fails the measurement.
- **gRPC small p50**: `h2load -c1 -m1` posting one pre-encoded ModelInfer request (1x4 FP32 raw
  contents) as a length-prefixed message with `content-type: application/grpc` and
  `te: trailers`; the median of its per-request log (`--log-file`), after a warm-up. h2load
  rather than grpcio's Python client, which in the same check added about 300 µs per call.
- **gRPC small RPS, 16 in flight**: `h2load -c1 -m16` (one connection, 16 streams, as one
  channel of a client), requests per second. A gRPC error is an HTTP 200 without a message, so
  the measurement fails unless every reply carries a message.
- **REST 4 MiB binary**: `bench/upload.py` posts a 1x1048576 FP32 tensor with the binary tensor
  data extension (`Inference-Header-Content-Length`, `binary_data_output`) one request at a time on
  one connection, and reports MB/s (10^6 bytes) of request body. The first answer is checked.
- **REST 4 MiB JSON**: the same with a 4 MiB JSON body of 466,033 numbers written like `0.123456`
  (binary output, so that the figure is the decoding of the request). The bare Starlette route
  reads the body and does not parse it.
- **REST 4 MiB JSON memory**: on a freshly started server (the round's last cold-start process,
  after its first small answer), the peak RSS growth of the server's whole session
  (`/proc/PID/clear_refs` resets VmHWM; for Triton the sum over tritonserver and its stub) while
  it answers 4 MiB JSON requests for one measurement, divided by the body's size; the worst round
  is reported.
- **gRPC 4 MiB raw**: `bench/upload.py` calls ModelInfer with a 1x1048576 FP32 tensor in raw
  contents (4 MiB), one call at a time on one channel; MB/s of request message. The bare handler
  answers a fixed reply, the others the 4 MiB result.
- **cold start**: from spawning the server process to its first successful REST infer answer,
  polling every 5 ms from core 1; five starts of each server per round, the servers in turn, and
  the median of a round's five is that round's figure. omi serve is started as a user starts it
  (REST, gRPC and OMI gRPC), Triton with the adder's repository.
- **batching**: `omi serve bench/scaling_models.py` serving the same model twice (predict
  sleeps 2 ms per call, `max_concurrency=1`, inputs `[-1, 4]` FP32), without and with
  `max_batch_size=16`; `wrk -c16` posts 1-row requests to each, requests per second.
- **streaming**: `bench/streaming.py` asks for one stream of 10,000 tokens at a time, for the
  measurement's seconds (3 streams at least, after one to warm up): over REST, `POST
  /v2/models/tokens/generate_stream` on a raw socket that counts the `data:` events of the
  chunked reply; over gRPC, `ModelStreamInfer` with `triton_enable_empty_final_response` (so
  that no response waits for the next) on a bare HTTP/2 client that counts the reply's
  messages (grpcio's Python client spends more per message than the server). Tokens per second
  is 10,000 over the time from sending the request to the end of the reply; time to first token
  is from sending the request to the first event or message. Medians of the streams. The bare
  grpc.aio baseline (`bench/grpc_baseline.py`) serves the gRPC stream too, on its own process
  started for the streaming figures.
- **workers**: `omi serve bench/scaling_models.py:gil_burner` (predict burns 1 ms of its thread's
  CPU time in a pure-Python loop, holding the GIL) with `--workers 1` and `--workers 2`, allowed
  both cores, `wrk -c16` unpinned; requests per second, once every worker serves.
- **metrics and access log**: `omi serve examples/adder.py` started afresh with both off
  (`--no-metrics --no-access-log`) and with both on (`--metrics --access-log`, its log to a
  file), the order turning each round; `wrk -c1` (p50), `wrk -c16` and `h2load -m16` as above.
"""
