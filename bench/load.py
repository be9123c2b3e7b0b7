"""A small HTTP/1.1 load generator: keep-alive connections on uvloop, one request in flight per
connection, latency per request. It runs pinned to its own core, apart from the server."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import uvloop


async def _connection(host: str, port: int, request: bytes, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            status = head[9:12]
            await reader.readexactly(length)
            if status != b"200":
                raise RuntimeError(f"status {status.decode()}: {head!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def run(host: str, port: int, path: str, body: bytes, connections: int, seconds: float) -> dict[str, float]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    warm: list[float] = []
    await _connection(host, port, request, time.perf_counter() + 0.5, warm)
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_connection(host, port, request, until, latencies) for _ in range(connections)))
    return summary(latencies, time.perf_counter() - started)


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    """Requests, requests/s and the p50 and p99 latency of a run (shared with grpc_load.py)."""
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    }


if __name__ == "__main__":
    host, port, path, body, connections, seconds = sys.argv[1:7]
    result = uvloop.run(run(host, int(port), path, body.encode(), int(connections), float(seconds)))
    print(json.dumps(result))
