"""The HTTP/1.1 bounds of :mod:`omi_adapters.http_protocol` against hostile clients, over real
loopback sockets: a uvicorn server with a tiny ASGI app in a thread (so that the tests can see
what the application saw), then a real ``omi serve`` with the flags.

Every bound is short here (about a second); "closed in time" means within the bound plus a
margin for a loaded machine, never a performance figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from omi_adapters.errors import ConfigurationError
from omi_adapters.http_protocol import ON_DISCONNECT, HttpLimits, LimitedHttpToolsProtocol, http_protocol
from tests.conftest import EXAMPLES
from tests.servers import serve

pytestmark = pytest.mark.timeout(120)

#: Slack on every "closed within the bound" (scheduling on a busy CI machine).
MARGIN = 1.5
BIG_CHUNK = b"x" * (256 * 1024)


# The application, and what it saw


@dataclass
class Seen:
    """What the test application saw, written from the server's thread."""

    events: list[str] = field(default_factory=list)
    hook_calls: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    extensions: list[dict[str, Any]] = field(default_factory=list)


def make_app(seen: Seen) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        extensions = scope.get("extensions", {})
        seen.extensions.append(extensions)
        hooks = extensions.get(ON_DISCONNECT, [])
        if path == "/echo":
            # Reads the whole body, with a hook like the REST app's.
            hooks.append(lambda: seen.hook_calls.append("echo"))
            seen.started.set()
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    seen.events.append("echo: disconnect")
                    seen.finished.set()
                    return
                size += len(message["body"])
                if not message["more_body"]:
                    break
            await _reply(send, 200, json.dumps({"size": size}).encode())
        elif path == "/big":
            # 64 MiB in 256 KiB chunks: far more than the socket buffers hold.
            length = b"%d" % (256 * len(BIG_CHUNK))
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
            seen.started.set()
            for _ in range(255):
                await send({"type": "http.response.body", "body": BIG_CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": BIG_CHUNK})
            seen.events.append("big: sent")
            seen.finished.set()
        elif path == "/hang":
            # Never answers by itself: waits for its on_disconnect hook.
            gone = asyncio.Event()

            def broken() -> None:
                raise RuntimeError("a broken hook")

            hooks.append(broken)
            hooks.append(gone.set)
            hooks.append(lambda: seen.hook_calls.append("hang"))
            seen.started.set()
            try:
                await asyncio.wait_for(gone.wait(), 10)
                seen.events.append("hang: hook called")
            except TimeoutError:
                seen.events.append("hang: no hook")
            seen.finished.set()
        elif path == "/slow":
            hooks.append(lambda: seen.hook_calls.append("slow"))
            await asyncio.sleep(0.3)
            await _reply(send, 200, b'{"slow":true}')
        else:
            if path == "/hooked":
                hooks.append(lambda: seen.hook_calls.append("hooked"))
            await _reply(send, 200, b'{"ok":true}')

    return app


async def _reply(send: Callable[..., Any], status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Running:
    port: int
    seen: Seen
    server: uvicorn.Server

    def connections(self) -> int:
        return len(self.server.server_state.connections)

    def wait_connections(self, predicate: Callable[[int], bool], timeout: float = 5) -> int:
        deadline = time.monotonic() + timeout
        while not predicate(self.connections()):
            assert time.monotonic() < deadline, f"the server holds {self.connections()} connections"
            time.sleep(0.01)
        return self.connections()


@contextlib.contextmanager
def running(limits: HttpLimits) -> Iterator[Running]:
    """A uvicorn server with ``http_protocol(limits)`` and the test app, in a thread, on loopback."""
    seen = Seen()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        make_app(seen), http=http_protocol(limits), lifespan="off", log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        yield Running(port, seen, server)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


# A raw HTTP/1.1 client


@contextlib.contextmanager
def connect(port: int, timeout: float = 5) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        yield sock


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> str:
        assert self.headers["content-type"] == "application/json"
        return str(json.loads(self.body)["error"])


class Reader:
    """Responses from one connection, in order (pipelined ones may arrive in one read)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def _more(self, what: str) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed {what}: {self.data[:200]!r}"
        self.data += chunk

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.data:
            self._more("before a response")
        head, _, self.data = self.data.partition(b"\r\n\r\n")
        status, headers = _head(head)
        length = int(headers.get("content-length", "0"))
        while len(self.data) < length:
            self._more("inside a response body")
        body, self.data = self.data[:length], self.data[length:]
        return Response(status, headers, body)


def _head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}


def read_response(sock: socket.socket) -> Response:
    """The one response expected on ``sock`` (content-length framed)."""
    return Reader(sock).response()


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``timeout``, discarding data."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionError:
                return True
    return False


def get(port: int, path: str = "/", extra: bytes = b"") -> Response:
    with connect(port) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nhost: test\r\n" + extra + b"\r\n")
        return read_response(sock)


def served_meanwhile(port: int, times: int, every: float) -> list[Response]:
    responses = []
    for _ in range(times):
        time.sleep(every)
        responses.append(get(port))
    return responses


def trickle(sock: socket.socket, byte: bytes, every: float, until: float) -> tuple[bytes, float]:
    """Send ``byte`` every ``every`` seconds until the server answers or closes (or ``until`` s pass).

    Returns what the server sent and when (seconds after the call) it closed the connection.
    """
    start = time.monotonic()
    received = b""
    while time.monotonic() - start < until:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionError:
                break
            if not chunk:
                break
            received += chunk
            continue
        try:
            sock.sendall(byte)
        except (BrokenPipeError, ConnectionError):
            pass
    return received, time.monotonic() - start


def answer(received: bytes) -> Response:
    """The response in all that a connection received."""
    assert b"\r\n\r\n" in received, f"no response: {received[:200]!r}"
    head, _, body = received.partition(b"\r\n\r\n")
    status, headers = _head(head)
    return Response(status, headers, body[: int(headers.get("content-length", "0"))])


def background(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``fn`` in a thread now; the returned callable joins it and returns (or raises) its result."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the joining test
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()

    def join() -> Any:
        thread.join(30)
        assert not thread.is_alive()
        if "error" in result:
            raise result["error"]
        return result["value"]

    return join


# The bounds


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="header_timeout"):
        http_protocol(HttpLimits(header_timeout=-1))
    with pytest.raises(ConfigurationError, match="max_headers"):
        http_protocol(HttpLimits(max_headers=1.5))  # type: ignore[arg-type]
    made = http_protocol(HttpLimits(max_headers=7))
    assert issubclass(made, LimitedHttpToolsProtocol) and made.limits.max_headers == 7
    assert LimitedHttpToolsProtocol.limits == HttpLimits()  # a factory leaves the defaults alone


def test_slowloris_head_gets_408_while_others_are_served() -> None:
    limits = HttpLimits(header_timeout=1.0, idle_timeout=0.5)
    with running(limits) as srv, connect(srv.port) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: ")
        others = background(lambda: served_meanwhile(srv.port, times=3, every=0.3))
        received, closed_after = trickle(slow, b"a", every=0.2, until=10)
        assert [r.status for r in others()] == [200, 200, 200]
    reply = answer(received)
    assert reply.status == 408 and reply.headers["connection"] == "close"
    assert reply.error() == "request headers not complete within 1s (--header-timeout)"
    # Past the idle timeout (the first byte stopped it), within the header timeout and a margin.
    assert 0.9 <= closed_after <= 1.0 + MARGIN


def test_blank_lines_do_not_keep_an_idle_connection_open() -> None:
    with running(HttpLimits(idle_timeout=1.0, header_timeout=10)) as srv, connect(srv.port) as sock:
        received, closed_after = trickle(sock, b"\r\n", every=0.2, until=10)
    assert received == b"" and 0.9 <= closed_after <= 1.0 + MARGIN


def test_slow_body_gets_408_and_the_application_sees_the_disconnect() -> None:
    with running(HttpLimits(body_timeout=1.0)) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 1000\r\n\r\n")
        received, closed_after = trickle(sock, b"a", every=0.2, until=10)
        assert srv.seen.finished.wait(5)
        assert srv.seen.events == ["echo: disconnect"]
        assert srv.seen.hook_calls == ["echo"]  # a cut connection is a client gone away
        srv.wait_connections(lambda n: n == 0)
    reply = answer(received)
    assert reply.status == 408 and reply.headers["connection"] == "close"
    assert reply.error() == "request body not complete within 1s (--body-timeout)"
    assert 0.9 <= closed_after <= 1.0 + MARGIN


def test_a_body_sent_in_time_is_served() -> None:
    with running(HttpLimits(body_timeout=1.0, header_timeout=1.0)) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\n\r\n")
        for byte in b"abcde":
            time.sleep(0.1)
            sock.sendall(bytes([byte]))
        reply = read_response(sock)
        assert reply.status == 200 and json.loads(reply.body) == {"size": 5}
        # The connection lives on for the next request: no timer of the first is left behind.
        time.sleep(1.2)
        sock.sendall(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        assert read_response(sock).status == 200


def test_an_endless_header_line_gets_431_without_being_read() -> None:
    with running(HttpLimits(max_header_bytes=64 * 1024)) as srv, connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: test\r\nx-huge: ")
        sent, received = 0, b""
        chunk = b"a" * 16384
        while sent < 2 * 1024 * 1024:
            readable, _, _ = select.select([sock], [], [], 0.005)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionError):
                break
            sent += len(chunk)
        with contextlib.suppress(ConnectionError):
            while data := sock.recv(65536):
                received += data
        assert get(srv.port).status == 200  # served right after
    reply = answer(received)
    assert reply.status == 431 and reply.headers["connection"] == "close"
    assert reply.error() == "request headers exceed 65536 bytes (--max-header-bytes)"
    # The server stopped at the bound (plus one read), not at the end of the 2 MiB.
    assert sent < 1024 * 1024, sent


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"".join(b"x-h%d: v\r\n" % i for i in range(101)), "more than 100 header fields (--max-headers)"),
        (b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 2000) for i in range(40)), "request headers exceed 65536 bytes"),
        (b"x-one: " + b"v" * 70000 + b"\r\n", "request headers exceed 65536 bytes (--max-header-bytes)"),
    ],
    ids=["too-many-fields", "too-many-bytes", "one-long-line"],
)
def test_heads_over_a_bound_get_431(head: bytes, message: str) -> None:
    with running(HttpLimits()) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: test\r\n" + head + b"\r\n")
            reply = read_response(sock)
            assert closed_by_server(sock, 2)
        assert reply.status == 431 and message in reply.error()
        assert srv.seen.extensions == []  # no application ran for it
        assert get(srv.port).status == 200


def test_heads_within_the_bounds_are_served() -> None:
    with running(HttpLimits()) as srv:
        assert get(srv.port, extra=b"".join(b"x-h%d: v\r\n" % i for i in range(99))).status == 200
        assert get(srv.port, extra=b"x-one: " + b"v" * 60000 + b"\r\n").status == 200
        # A head arriving in many small reads is counted, not refused.
        with connect(srv.port) as sock:
            head = b"GET / HTTP/1.1\r\nhost: test\r\n" + b"x-one: " + b"v" * 30000 + b"\r\n\r\n"
            for i in range(0, len(head), 1000):
                sock.sendall(head[i : i + 1000])
            assert read_response(sock).status == 200


def test_idle_connections_are_closed_while_others_are_served() -> None:
    with running(HttpLimits(idle_timeout=1.0)) as srv, contextlib.ExitStack() as stack:
        start = time.monotonic()
        idle = [stack.enter_context(connect(srv.port)) for _ in range(200)]
        srv.wait_connections(lambda n: n >= 200)
        assert get(srv.port).status == 200
        # A kept-alive connection, after its response, counts as idle too.
        kept = stack.enter_context(connect(srv.port))
        kept.sendall(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        assert read_response(kept).status == 200
        open_ = set(idle) | {kept}
        while open_ and time.monotonic() - start < 1.0 + MARGIN + 1:
            readable, _, _ = select.select(list(open_), [], [], 0.1)
            for sock in readable:
                with contextlib.suppress(ConnectionError):
                    assert sock.recv(1) == b""
                open_.discard(sock)
        elapsed = time.monotonic() - start
        assert not open_, f"{len(open_)} connections still open after {elapsed:.1f}s"
        assert elapsed >= 0.9
        srv.wait_connections(lambda n: n == 0)


def test_a_client_that_does_not_read_is_aborted() -> None:
    with running(HttpLimits(send_timeout=1.0)) as srv:
        sock = socket.socket()
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            start = time.monotonic()
            sock.sendall(b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n")
            assert srv.seen.started.wait(5)
            assert get(srv.port).status == 200  # the server is responsive meanwhile
            # The application's blocked send returned once the connection was aborted.
            assert srv.seen.finished.wait(1.0 + MARGIN)
            elapsed = time.monotonic() - start
            assert srv.seen.events == ["big: sent"]
            assert 0.9 <= elapsed <= 1.0 + MARGIN
            srv.wait_connections(lambda n: n == 0)
            # A reset, not a close: the server's kernel kept none of the unsent megabytes.
            with pytest.raises(ConnectionResetError):
                while sock.recv(1 << 20):
                    pass


def test_max_connections_refuses_with_503_then_serves_again() -> None:
    with running(HttpLimits(max_connections=5, idle_timeout=30)) as srv, contextlib.ExitStack() as stack:
        held = [stack.enter_context(connect(srv.port)) for _ in range(5)]
        srv.wait_connections(lambda n: n == 5)
        with connect(srv.port) as extra:
            reply = read_response(extra)
            assert closed_by_server(extra, 2)
        assert reply.status == 503 and reply.headers["connection"] == "close"
        assert reply.error() == "too many open connections (--max-connections)"
        for sock in held[:2]:
            sock.close()
        srv.wait_connections(lambda n: n <= 3)
        assert get(srv.port).status == 200
        held[2].sendall(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")  # the held ones were never cut
        assert read_response(held[2]).status == 200


def test_on_disconnect_hooks_run_when_the_client_goes_away(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="omi_adapters.http")
    with running(HttpLimits()) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET /hang HTTP/1.1\r\nhost: test\r\n\r\n")
            assert srv.seen.started.wait(5)
        assert srv.seen.finished.wait(5)
        assert srv.seen.events == ["hang: hook called"]
        assert srv.seen.hook_calls == ["hang"]  # once, and after a hook that raised
        assert any("omi.on_disconnect callback raised" in r.getMessage() for r in caplog.records)
        # A request answered in full does not call its hooks when the connection closes later.
        with connect(srv.port) as sock:
            sock.sendall(b"GET /hooked HTTP/1.1\r\nhost: test\r\n\r\n")
            assert read_response(sock).status == 200
        srv.wait_connections(lambda n: n == 0)
        assert srv.seen.hook_calls == ["hang"]
        assert all(isinstance(ext[ON_DISCONNECT], list) for ext in srv.seen.extensions)


def test_pipelined_requests_are_answered_in_order() -> None:
    with running(HttpLimits(header_timeout=1.0, body_timeout=1.0)) as srv, connect(srv.port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc"
            b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nxy"
        )
        reader = Reader(sock)
        first = reader.response()
        assert (first.status, json.loads(first.body)) == (200, {"size": 3})
        assert reader.response().status == 200
        third = reader.response()
        assert (third.status, json.loads(third.body)) == (200, {"size": 2})


@pytest.mark.parametrize(
    "bad",
    [b"".join(b"x-h%d: v\r\n" % i for i in range(101)), b"x-one: " + b"v" * 100_000 + b"\r\n"],
    ids=["too-many-fields", "one-long-line"],
)
def test_a_refused_pipelined_request_is_answered_after_the_ones_before_it(bad: bytes) -> None:
    with running(HttpLimits()) as srv, connect(srv.port) as sock:
        sock.sendall(
            b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n"
            b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"
            b"GET / HTTP/1.1\r\nhost: t\r\n" + bad + b"\r\n"
        )
        reader = Reader(sock)
        first = reader.response()
        assert (first.status, first.body) == (200, b'{"slow":true}')
        assert reader.response().status == 200
        third = reader.response()
        assert third.status == 431 and third.headers["connection"] == "close"
        assert closed_by_server(sock, 2)
        assert srv.seen.hook_calls == []  # the requests before it were answered, not cut


# End to end: omi serve with the flags


def test_omi_serve_applies_the_flags() -> None:
    flags = ["--header-timeout", "1", "--idle-timeout", "1", "--max-header-bytes", "8192", "--max-connections", "20"]
    with serve(EXAMPLES / "adder.py", protocols=("rest",), args=flags) as srv:
        srv.wait_ready()
        port = srv.http_port
        infer = b'{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}'
        with connect(port) as sock:
            sock.sendall(
                b"POST /v2/models/adder/infer HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(infer), infer)
            )
            reply = read_response(sock)
            assert reply.status == 200 and json.loads(reply.body)["outputs"][0]["data"] == [2, 3]
            assert closed_by_server(sock, 1.0 + MARGIN)  # --idle-timeout after the response
        with connect(port) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nx-slow: ")
            received, closed_after = trickle(sock, b"a", every=0.2, until=10)
        assert answer(received).status == 408 and closed_after <= 1.0 + MARGIN
        assert "--header-timeout" in answer(received).error()
        with connect(port) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 10000 + b"\r\n\r\n")
            reply = read_response(sock)
        assert reply.status == 431 and "(--max-header-bytes)" in reply.error()
        time.sleep(0.3)  # the connections above are gone on the server's side too
        with contextlib.ExitStack() as stack:
            held = [stack.enter_context(connect(port)) for _ in range(20)]
            with connect(port) as sock:  # accepted after the 20 (the backlog is FIFO)
                reply = read_response(sock)
            assert reply.status == 503 and "(--max-connections)" in reply.error()
            assert not closed_by_server(held[-1], 0.1)
        time.sleep(0.3)
        assert get(port, "/v2/health/live").status == 200
