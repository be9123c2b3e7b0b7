"""Large uploads, one at a time: post a 4 MiB body again and again over one connection and report
the request bodies' MB/s (10^6 bytes). The first answer is checked (Y = X + 1) and not timed;
every later one must be a success. Runs pinned to its own core, apart from the server.

    python bench/upload.py rest-binary|rest-json HOST PORT PATH SECONDS
    python bench/upload.py grpc-raw HOST PORT MODEL SECONDS

``--no-check`` (last) takes any answer of a bare baseline, whose fixed reply is not Y = X + 1.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable

import payloads


class Http:
    """A keep-alive HTTP/1.1 connection that posts one body and reads one reply at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.sock.sendall(head.encode())
        self.sock.sendall(body)
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "content-length" not in fields:
            raise RuntimeError(f"a reply without Content-Length (status {status}, {fields})")
        length = int(fields["content-length"])
        while len(self.buffer) < length:
            self._read()
        reply, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, fields, reply

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk


def rest(mode: str, host: str, port: int, path: str, check: bool) -> tuple[int, Callable[[], None]]:
    connection = Http(host, port)
    if mode == "rest-binary":
        body, header_length = payloads.large_binary()
        x = payloads.large_x(payloads.LARGE_ROWS)
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)}
    else:
        body = payloads.large_json()
        x = payloads.large_x(payloads.JSON_ROWS)
        headers = {"Content-Type": "application/json"}
    status, fields, reply = connection.post(path, body, headers)
    if status != 200:
        raise RuntimeError(f"status {status}: {reply[:300]!r}")
    if check:
        payloads.check_rest_reply(x, fields, reply)

    def once() -> None:
        status, _, reply = connection.post(path, body, headers)
        if status != 200:
            raise RuntimeError(f"status {status}: {reply[:300]!r}")

    return len(body), once


def grpc_raw(host: str, port: int, model: str, check: bool) -> tuple[int, Callable[[], None]]:
    import grpc

    x = payloads.large_x(payloads.LARGE_ROWS)
    request = payloads.grpc_request(x, model)
    limit = 64 * payloads.MIB
    channel = grpc.insecure_channel(
        f"{host}:{port}", options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    )
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(payloads.GRPC_PATH)  # bytes in and out
    reply = call(request)
    if check:
        payloads.check_grpc_reply(x, reply)

    def once() -> None:
        call(request)  # raises on any status but OK

    return len(request), once


def main(argv: list[str]) -> int:
    check = "--no-check" not in argv
    mode, host, port, where, seconds = [arg for arg in argv if arg != "--no-check"]
    if mode == "grpc-raw":
        size, once = grpc_raw(host, int(port), where, check)
    else:
        size, once = rest(mode, host, int(port), where, check)
    requests = 0
    started = time.perf_counter()
    until = started + float(seconds)
    while requests < 2 or time.perf_counter() < until:
        once()
        requests += 1
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {"requests": requests, "seconds": elapsed, "body_bytes": size, "mb_s": size * requests / elapsed / 1e6}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
