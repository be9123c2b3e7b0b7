"""omi serve's replies on the wire, over raw sockets: the small ones the HTTP protocol writes in
one call (``omi.respond``) keep HTTP/1.1's rules: pipelined requests answered in order, HTTP/1.0
and ``Connection: close`` closing the connection, HEAD answering the length without a body; a
WebSocket upgrade (the server has no WebSocket protocol) answered as plain HTTP. Small replies
wait for the end of the loop turn, every connection's together: none is lost or reordered."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import EXAMPLES
from tests.servers import Served, serve

pytestmark = pytest.mark.timeout(120)

BODY = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.5]}]}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with serve(EXAMPLES / "adder.py", protocols=("rest",)) as srv:
        srv.wait_ready()
        yield srv


def _connect(server: Served) -> socket.socket:
    host, port = server.http_url.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _infer(version: str = "1.1", extra: str = "") -> bytes:
    head = (
        f"POST /v2/models/adder/infer HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n{extra}\r\n"
    )
    return head.encode() + BODY


def _read_reply(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> tuple[str, dict[str, str], bytes]:
    """One reply from ``sock`` (what is left over stays in ``buffer``): status line, headers, body."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-reply: {bytes(buffer)!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    length = 0 if head_only else int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_are_answered_in_order_on_one_connection(server: Served) -> None:
    ready = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(server) as sock:
        sock.sendall(_infer() + ready + _infer())
        buffer = bytearray()
        replies = [_read_reply(sock, buffer) for _ in range(3)]
    assert [status for status, _, _ in replies] == ["HTTP/1.1 200 OK"] * 3
    assert (
        json.loads(replies[0][2])["outputs"][0]["data"] == [2.0, 3.5] == json.loads(replies[2][2])["outputs"][0]["data"]
    )
    assert json.loads(replies[1][2]) == {"ready": True}
    assert all("connection" not in headers and "date" in headers for _, headers, _ in replies)


@pytest.mark.parametrize(
    "request_bytes", [_infer("1.0"), _infer(extra="Connection: close\r\n")], ids=["HTTP/1.0", "Connection: close"]
)
def test_a_connection_not_kept_alive_is_told_so_and_closed(server: Served, request_bytes: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(request_bytes)
        status, headers, body = _read_reply(sock, bytearray())
        assert status.endswith("200 OK") and headers["connection"] == "close"
        assert json.loads(body)["outputs"][0]["data"] == [2.0, 3.5]
        assert _closed(sock)


def _large_infer(columns: int, extra: str = "") -> bytes:
    body = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, columns], "data": [0.5] * columns}]})
    head = (
        "POST /v2/models/adder/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body.encode()


def test_replies_to_many_connections_at_once_arrive_whole_in_order_and_before_each_close(server: Served) -> None:
    # Every connection's requests are sent before any reply is read, so that the server answers
    # several connections in each loop turn: small replies (held for the turn), one over 64 KiB
    # (sent through uvicorn's send, past the cork: written at once, behind what is held), a
    # health route, and a last reply whose connection then closes.
    ready = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    pipeline = _infer() + _large_infer(20_000) + ready + _infer() + _large_infer(3, "Connection: close\r\n")
    sockets = [_connect(server) for _ in range(24)]
    try:
        for sock in sockets:
            sock.sendall(pipeline)
        for sock in sockets:
            buffer = bytearray()
            replies = [_read_reply(sock, buffer) for _ in range(5)]
            assert [status for status, _, _ in replies] == ["HTTP/1.1 200 OK"] * 5
            small, large, ready_reply, small_again, last = (json.loads(body) for _, _, body in replies)
            assert small["outputs"][0]["data"] == [2.0, 3.5] == small_again["outputs"][0]["data"]
            assert len(replies[1][2]) > 64 * 1024 and large["outputs"][0]["data"] == [1.5] * 20_000
            assert ready_reply == {"ready": True}
            assert last["outputs"][0]["data"] == [1.5] * 3 and replies[4][1]["connection"] == "close"
            assert not buffer and _closed(sock)
    finally:
        for sock in sockets:
            sock.close()


def test_head_answers_the_length_without_a_body_and_keeps_the_connection(server: Served) -> None:
    with _connect(server) as sock:
        sock.sendall(b"HEAD /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        status, headers, _ = _read_reply(sock, buffer, head_only=True)
        assert status == "HTTP/1.1 200 OK" and headers["content-length"] == str(len(b'{"ready":true}'))
        sock.sendall(_infer())
        status, _, body = _read_reply(sock, buffer)
    assert status == "HTTP/1.1 200 OK"  # a HEAD body would have come first, where this status line is
    assert json.loads(body)["outputs"][0]["data"] == [2.0, 3.5]


def test_a_websocket_upgrade_is_answered_as_plain_http(server: Served) -> None:
    # The application has no WebSocket route, and the server runs without WebSocket protocols.
    upgrade = (
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with _connect(server) as sock:
        sock.sendall(upgrade)
        status, _, body = _read_reply(sock, bytearray())
        assert status == "HTTP/1.1 200 OK" and json.loads(body) == {"live": True}
        sock.sendall(_infer())  # the connection goes on as HTTP
        status, _, body = _read_reply(sock, bytearray())
    assert status == "HTTP/1.1 200 OK" and json.loads(body)["outputs"][0]["data"] == [2.0, 3.5]
    assert "WebSocket library" not in server.output()
