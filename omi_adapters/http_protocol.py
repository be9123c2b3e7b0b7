"""HTTP/1.1 for hostile clients: uvicorn's httptools protocol with bounds on what a client may hold.

uvicorn reads a request head of any size, waits forever for headers, bodies and readers, and
keeps a connection that never sends a byte open for good (its keep-alive timer only starts after
a response). Each of those lets a few clients take the server from everybody else:

- **Header floods** (``--max-header-bytes``, ``--max-headers``): httptools gathers an unfinished
  header value by concatenation, so one endless header line costs memory and quadratic CPU on
  the event loop that every client shares. A head past either bound gets 431. An unfinished
  head is cut off as soon as the bytes received for it pass the bound, before httptools sees
  more of it; nothing after is parsed.
- **Slowloris** (``--header-timeout``, ``--body-timeout``): a client trickling its head or its
  body a byte at a time holds a connection, a file descriptor and (for a body) a running
  request for as long as it likes. A head must be complete within its timeout from its first
  byte, a body within its own from the end of the head; then 408.
- **File-descriptor exhaustion** (``--idle-timeout``, ``--max-connections``): every connection
  is a descriptor of a process with a fixed budget of them. A connection without a request in
  progress, new or kept alive, is closed after ``--idle-timeout`` (blank lines do not count as
  a request); past ``--max-connections`` a new connection gets 503 and is closed at once, so
  that the process always has descriptors left for the clients it serves.
- **Clients that do not read** (``--send-timeout``): a reply waiting for a reader holds its
  buffers, its request and (in the kernel) megabytes of unsent data. A write blocked that long,
  or a close still waiting for the client to read, resets the connection.

Errors are answered as the REST API answers, ``{"error": "..."}`` naming the flag, with
``connection: close``, and the connection is closed. The application of a request cut that way
sees ``http.disconnect``; a pipelined request is refused only after the responses to the
requests before it. A value of 0 turns that bound off.

The application learns that a client went away through the ``omi.on_disconnect`` scope
extension (:data:`ON_DISCONNECT`): a list to which it may append zero-argument callables,
called once each when the connection is lost (or cut by a bound above) before the request's
response is complete.

:func:`http_protocol` builds what to pass as ``uvicorn.Config(http=...)``. The cost per request
is a few attribute updates in the parser callbacks: timers are armed only when a read leaves a
head or a body unfinished, which a request arriving in one read never does, and header fields
are only counted when the bytes of the head could exceed the bound. A connection upgraded to a
WebSocket leaves these bounds for those of uvicorn's WebSocket protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import struct
import sys
import weakref
from asyncio import TimerHandle
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from omi_adapters.errors import ConfigurationError
from omi_adapters.limits import HttpLimits
from omi_adapters.rest import ON_DISCONNECT, RESPOND  # named by the REST app, which Lambda runs without uvicorn

__all__ = ["ON_DISCONNECT", "RESPOND", "HttpLimits", "LimitedHttpToolsProtocol", "http_protocol"]


log = logging.getLogger("omi_adapters.http")

# Where a connection's parser stands. A request is "in progress" from HEAD to DONE; IDLE waits
# for the next one; CLOSED ignores everything (refused, lost, or handed to a WebSocket).
_IDLE, _HEAD, _BODY, _DONE, _CLOSED = range(5)
#: Writes up to this size in one loop turn are joined into one (a small reply's head and body).
_CORK_BYTES = 64 * 1024
#: The content type of the errors this protocol answers itself.
_JSON = [(b"content-type", b"application/json")]
#: Stands for "no bound" where a number is needed.
_UNBOUNDED = sys.maxsize
#: The delay of a keep-alive timer when --idle-timeout is off (uvicorn always arms one).
_NEVER = 10 * 365 * 24 * 3600.0
#: SO_LINGER on, 0 seconds: closing the socket resets the connection and drops unsent data.
_RESET = struct.pack("ii", 1, 0)
#: Seconds between two warnings that --max-connections refuses connections (each is logged at debug).
_FULL_WARNING_INTERVAL = 60.0


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, enforcing :attr:`limits` on each of its connections.

    Each override extends uvicorn's callback of that name and calls it. This class applies the
    default limits; :func:`http_protocol` makes a subclass bound to others.

    Attributes:
        limits: The bounds, as the flags of ``omi serve`` set them (see the module documentation).
    """

    limits: ClassVar[HttpLimits] = HttpLimits()
    _max_head_bytes: ClassVar[int]
    _max_headers: ClassVar[int]
    _header_timeout: ClassVar[float]
    _body_timeout: ClassVar[float]
    _idle_timeout: ClassVar[float]
    _send_timeout: ClassVar[float]
    _max_connections: ClassVar[int]
    _messages: ClassVar[Mapping[str, str]]
    _full_warned_at: ClassVar[float]

    def __init_subclass__(cls, limits: HttpLimits | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._configure(limits or cls.limits)

    @classmethod
    def _configure(cls, limits: HttpLimits) -> None:
        _check(limits)
        cls.limits = limits
        cls._max_head_bytes = limits.max_header_bytes or _UNBOUNDED
        cls._max_headers = limits.max_headers or _UNBOUNDED
        cls._header_timeout = limits.header_timeout
        cls._body_timeout = limits.body_timeout
        cls._idle_timeout = limits.idle_timeout
        cls._send_timeout = limits.send_timeout
        cls._max_connections = limits.max_connections or _UNBOUNDED
        cls._full_warned_at = -math.inf
        cls._messages = {
            "head_bytes": f"request headers exceed {limits.max_header_bytes} bytes (--max-header-bytes)",
            "headers": f"more than {limits.max_headers} header fields (--max-headers)",
            "header_timeout": f"request headers not complete within {limits.header_timeout:g}s (--header-timeout)",
            "body_timeout": f"request body not complete within {limits.body_timeout:g}s (--body-timeout)",
            "connections": "too many open connections (--max-connections)",
        }

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn's keep-alive timer is the idle timer (uvicorn types it as whole seconds).
        self.timeout_keep_alive = self._idle_timeout or _NEVER  # type: ignore[assignment]
        self._phase = _IDLE
        # Bytes of the current read that may belong to a head beginning in it: all of them when
        # the read began at a message boundary, 0 once a message ended inside it.
        self._chunk = 0
        # Bytes received for the current head, exact when it began at the start of a read (then
        # they bound its size: its fields need no counting unless they pass the bound).
        self._head_raw = 0
        self._head_exact = True
        self._header_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        # Armed while writes are paused, or while a close waits for a client to read.
        self._send_timer: TimerHandle | None = None
        # The cycle whose application runs (with pipelining, self.cycle is the newest one).
        self._running: RequestResponseCycle | None = None
        # A refusal (status, message) waiting for the responses to earlier pipelined requests.
        self._deferred: tuple[int, str] | None = None
        # The RESPOND extension of every request of this connection (bound once, not per request).
        self._responder = self._respond
        # Requests of this connection counted in its turn's in_progress: their reply has not ended.
        self._open = 0

    # Connection

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        # Small writes wait for the end of the loop turn, or for the last reply under way (_Turn):
        # uvicorn's head and body go in one write, and the replies of the turn back to back.
        self._turn = _turn(self.loop)
        self._cork = _Corked(transport, self._turn)
        if len(self.connections) > self._max_connections:
            cls = type(self)
            now = self.loop.time()
            if now - cls._full_warned_at >= _FULL_WARNING_INTERVAL:
                cls._full_warned_at = now
                log.warning("%d connections open (--max-connections): refusing new ones", self._max_connections)
            self._refuse(503, self._messages["connections"], level=logging.DEBUG)
            return
        if self._idle_timeout:
            # uvicorn arms its keep-alive timer only after a response: a connection that never
            # sends a byte would stay open for good.
            self.timeout_keep_alive_task = self.loop.call_later(self._idle_timeout, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _CLOSED
        self._turn.in_progress -= self._open
        self._open = 0
        self._cancel_timers()
        running, self._running = self._running, None
        super().connection_lost(exc)
        self._unset_keepalive_if_required()  # uvicorn leaves it armed when the loss has a cause
        if running is not None and not running.response_complete:
            if running is not self.cycle:
                # A pipelined request is queued behind it: uvicorn only tells the newest cycle.
                running.disconnected = True
                running.message_event.set()
            _call_disconnect_hooks(running.scope)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _HEAD:
            self._receive_head(data)
            return
        if phase == _CLOSED:
            return
        idle = None
        if phase != _BODY:
            # IDLE or DONE: this read starts at a message boundary.
            idle = self.timeout_keep_alive_task
            self._chunk = len(data)
        super().data_received(data)
        if self._phase != _DONE:  # DONE, the usual case: the whole request came in this read
            self._after_read(idle)

    def _receive_head(self, data: bytes) -> None:
        """A read continuing an unfinished head: the head may take only what is left of its bound."""
        room = self._max_head_bytes - self._head_raw
        if len(data) <= room:
            self._head_raw += len(data)
            super().data_received(data)
        else:
            view = memoryview(data)
            self._head_raw = self._max_head_bytes  # on_message_begin resets it if another head begins
            if room > 0:
                super().data_received(view[:room])  # type: ignore[arg-type]  # httptools takes any buffer
            if self._phase == _HEAD and self._head_raw == self._max_head_bytes:
                self._refuse(431, self._messages["head_bytes"])
                return
            if self._phase == _CLOSED or self.transport.is_closing():
                return
            super().data_received(view[room:])  # type: ignore[arg-type]
        self._after_read(None)

    def _after_read(self, idle: TimerHandle | None) -> None:
        """Arm the timer of whatever the read left unfinished."""
        if self.transport.is_closing():  # uvicorn refused the request (400): bound its close
            self._watch_close()
            return
        phase = self._phase
        if phase == _BODY:
            if self._body_timer is None and self._body_timeout:
                self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out)
        elif phase == _HEAD:
            if self._head_raw > self._max_head_bytes:
                self._refuse(431, self._messages["head_bytes"])
            elif self._header_timer is None and self._header_timeout:
                self._header_timer = self.loop.call_later(self._header_timeout, self._header_timed_out)
        elif (
            phase == _IDLE
            and idle is not None
            and self.timeout_keep_alive_task is None
            and not self.transport.is_closing()
        ):
            # Bytes that began no request (blank lines) do not make the connection less idle:
            # uvicorn cancelled the idle timer on them; put it back as it was.
            self.timeout_keep_alive_task = self.loop.call_at(idle.when(), self.timeout_keep_alive_handler)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        hooks: list[Callable[[], object]] = []
        extensions = self.scope.setdefault("extensions", {})
        extensions[ON_DISCONNECT] = hooks  # type: ignore[assignment]
        extensions[RESPOND] = self._responder  # type: ignore[assignment]
        if self._phase != _CLOSED:
            self._phase = _HEAD
            self._head_raw = self._chunk
            self._head_exact = self._chunk > 0

    def on_headers_complete(self) -> None:
        if self._phase == _CLOSED:
            return  # refused earlier in this read: no application for this request
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._head_raw > self._max_head_bytes or not self._head_exact or len(self.headers) > self._max_headers:
            problem = self._head_problem()
            if problem is not None:
                self._refuse(431, problem)
                return
        self._phase = _BODY
        super().on_headers_complete()  # starts the application, or queues it behind the running one
        self.cycle.transport = self._cork  # type: ignore[assignment]
        self._open += 1
        self._turn.in_progress += 1
        running = self._running
        if running is None or running.response_complete:
            self._running = self.cycle

    def _head_problem(self) -> str | None:
        """What is wrong with a complete head that its raw size could not vouch for."""
        if len(self.headers) > self._max_headers:
            return self._messages["headers"]
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        return self._messages["head_bytes"] if size > self._max_head_bytes else None

    def on_body(self, body: bytes) -> None:
        if self._phase != _CLOSED:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._phase == _CLOSED:
            return
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._phase = _DONE
        self._chunk = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        turn = self._turn
        if self._open:
            self._open -= 1
            turn.in_progress -= 1
        if not turn.in_progress:
            turn.write()  # the last reply under way: nothing else to wait for
        queued = self.pipeline[-1][0] if self.pipeline else None
        super().on_response_complete()  # starts the next pipelined request, or arms the idle timer
        if self.transport.is_closing():
            self._watch_close()
        elif queued is not None:
            self._running = queued
            if self._deferred is not None:
                self.flow.pause_reading()  # resumed for the next request; the refusal still waits
        elif self._deferred is not None:
            self._answer(*self._deferred, None)
        elif self._phase == _DONE:
            self._phase = _IDLE
        elif self._phase != _IDLE:
            # The next request's head or body is arriving and has a timer of its own.
            self._unset_keepalive_if_required()

    def shutdown(self) -> None:
        self._cork.flush()  # a reply answered in this turn goes out before the close
        super().shutdown()  # closes the connection unless a response is under way
        if self.transport.is_closing():
            self._watch_close()

    def _unsupported_upgrade_warning(self) -> None:
        # The server runs without WebSocket protocols (ws="none": the application has no WebSocket
        # route): an upgrade request is answered as plain HTTP. uvicorn would log two warnings per
        # such request, one advising to install a WebSocket library.
        log.debug("upgrade request answered as plain HTTP (no WebSocket routes)")

    # Writing

    def _respond(self, send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes, length: int) -> bool:
        """Write a request's whole reply at once (the :data:`RESPOND` extension); False: not now.

        ``send`` is the one the application was given: the request's cycle when it is the
        cycle's own ``send`` on this connection; anything else is a middleware's wrapper (adding
        headers, say), and the reply must go through it.

        What uvicorn's ``send`` does for an ``http.response.start`` and one final
        ``http.response.body``, in one write: the status line, uvicorn's default headers, the
        application's (its own constants, which need none of ``send``'s checks), the length, and
        ``connection: close`` when the connection is not kept alive. A reply already started, or
        a connection whose writes are paused (``send`` would wait for them), is left to ``send``.
        """
        cycle = getattr(send, "__self__", None)
        if (
            not isinstance(cycle, RequestResponseCycle)
            or cycle.flow is not self.flow  # a cycle of another connection
            or cycle.response_started
            or cycle.flow.write_paused
        ):
            return False
        if cycle.disconnected:
            return True  # as send: nobody to write to
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        content = _head(status, cycle.default_headers, headers, length, close=not cycle.keep_alive)
        content.append(body)
        self._cork.write(b"".join(content))  # after what was already answered on this connection
        cycle.expected_content_length = 0
        cycle.chunked_encoding = False
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self._cork.close()
        cycle.on_response()
        return True

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None and self._send_timeout:
            self._send_timer = self.loop.call_later(self._send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # Timers

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        self._cork.flush()
        super().timeout_keep_alive_handler()
        self._watch_close()

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.flow.read_paused:
            # The server stopped reading (a pipelined request waits): the client is not at fault.
            self._header_timer = self.loop.call_later(self._header_timeout, self._header_timed_out)
            return
        self._refuse(408, self._messages["header_timeout"])

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The application has not asked for (more of) the body yet: the client is not at fault.
            self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out)
            return
        self._refuse(408, self._messages["body_timeout"])

    def _send_timed_out(self) -> None:
        self._send_timer = None
        log.info("%s: the client read nothing for %gs (--send-timeout): aborted", self._peer(), self._send_timeout)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # A reset, not a close: the kernel would otherwise keep the unsent data, up to megabytes,
            # for minutes after the descriptor is gone.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.transport.abort()

    def _cancel_timers(self) -> None:
        self._cancel_read_timers()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _cancel_read_timers(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # Refusing

    def _refuse(self, status: int, message: str, level: int = logging.INFO) -> None:
        """Stop reading, answer the request being received with ``status`` and ``{"error": message}``
        (unless its response has started), and close the connection.

        With pipelining, the responses to the requests before it come first: the refusal waits
        for them (reading stays paused meanwhile).
        """
        if self._phase == _CLOSED:
            return
        refused = self.cycle if self._phase == _BODY else None  # a head being received has no cycle yet
        self._phase = _CLOSED
        self._cancel_read_timers()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        log.log(level, "%s: %s %s", self._peer(), status, message)
        if refused is not None and not refused.response_complete:
            # Its application's sends are dropped from now on, and receive() says http.disconnect.
            refused.disconnected = True
            refused.message_event.set()
        running = self._running
        if running is not None and running is not refused and not running.response_complete:
            if self.pipeline and self.pipeline[0][0] is refused:
                self.pipeline.popleft()  # never to run
            self._deferred = (status, message)
            self.flow.pause_reading()
            return
        self._answer(status, message, refused)

    def send_400_response(self, msg: str) -> None:
        self._cork.flush()  # after what was already answered on this connection
        super().send_400_response(msg)

    def _answer(self, status: int, message: str, refused: RequestResponseCycle | None) -> None:
        self._cork.flush()  # after what was already answered on this connection
        self._unset_keepalive_if_required()
        if refused is None or not refused.response_started:
            self.transport.write(self._error_response(status, message))
        self.transport.close()
        self._watch_close()

    def _error_response(self, status: int, message: str) -> bytes:
        body = json.dumps({"error": message}).encode()
        content = _head(status, self.server_state.default_headers, _JSON, len(body), close=True)
        content.append(body)
        return b"".join(content)

    def _watch_close(self) -> None:
        """A close waits until the client has read what is buffered: bound that wait too."""
        if self._send_timer is None and self._send_timeout and self.transport.get_write_buffer_size():
            self._send_timer = self.loop.call_later(self._send_timeout, self._send_timed_out)

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


def _head(
    status: int,
    default_headers: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    length: int,
    close: bool,
) -> list[bytes]:
    """The parts of a response head: status line, uvicorn's default headers, ``headers``, the
    content length and, with ``close``, ``connection: close``."""
    content = [STATUS_LINE[status]]
    for name, value in (*default_headers, *headers):
        content += (name, b": ", value, b"\r\n")
    content.append(b"content-length: %d\r\n" % length)
    if close:
        content.append(b"connection: close\r\n")
    content.append(b"\r\n")
    return content


class _Turn:
    """The small writes of one loop's connections in its current turn, written together.

    A reply is written when it is the last one under way (:attr:`in_progress` falls to 0), with
    every reply held before it; while others are under way it waits for them, or for the end of
    the turn, whichever comes first. On loopback and in VMs, waking a client asleep in
    ``epoll_wait`` costs the writer more than the write, and a client reading many connections
    is then woken once per turn rather than once per reply; one request alone is written at once.
    """

    __slots__ = ("_held", "_loop", "_scheduled", "in_progress")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held: list[_Corked] = []
        self._scheduled = False
        #: Requests of the loop's connections between their head and the end of their reply.
        self.in_progress = 0

    def hold(self, cork: _Corked) -> None:
        self._held.append(cork)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._turn_ended)

    def write(self) -> None:
        """Write every held write now."""
        held, self._held = self._held, []
        for cork in held:
            cork.flush()

    def _turn_ended(self) -> None:
        self._scheduled = False
        self.write()


_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turn] = weakref.WeakKeyDictionary()


def _turn(loop: asyncio.AbstractEventLoop) -> _Turn:
    turn = _TURNS.get(loop)
    if turn is None:
        turn = _TURNS[loop] = _Turn(loop)
    return turn


class _Corked:
    """A connection's transport whose small writes wait for their :class:`_Turn`, then go out as
    one ``writelines`` (one syscall).

    A close, a refusal and a shutdown flush first. Past ``_CORK_BYTES`` what is pending is
    written at once, so that a large reply meets the transport's flow control
    (``pause_writing``) as it would without corking.
    """

    __slots__ = ("_pending", "_size", "_transport", "_turn")

    def __init__(self, transport: asyncio.Transport, turn: _Turn) -> None:
        self._transport = transport
        self._turn = turn
        self._pending: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._pending is None:
            if len(data) >= _CORK_BYTES:
                if not self._transport.is_closing():  # as flush: nothing goes to a closing transport
                    self._transport.write(data)
                return
            self._pending = [data]
            self._size = len(data)
            # A reply whose end is not in this loop turn (a stream) goes out at its end.
            self._turn.hold(self)
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _CORK_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is pending now."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def http_protocol(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """What to pass as ``uvicorn.Config(http=...)``: a factory of protocols enforcing ``limits``.

    The factory is a subclass of :class:`LimitedHttpToolsProtocol` bound to ``limits`` (a class
    is what ``uvicorn.Config`` types its ``http`` as); the connections it makes for one uvicorn
    server share that server's count against ``max_connections``.

    Args:
        limits: the bounds; a value of 0 turns that bound off.

    Returns:
        A protocol class, called by uvicorn once per accepted connection.

    Raises:
        ConfigurationError: a bound is negative, not a number, or a count is not an integer.
    """

    class Protocol(LimitedHttpToolsProtocol, limits=limits):
        pass

    Protocol.__name__ = Protocol.__qualname__ = "LimitedHttpToolsProtocol"
    return Protocol


def _check(limits: HttpLimits) -> None:
    for name in ("max_header_bytes", "max_headers", "max_connections"):
        value = getattr(limits, name)
        if type(value) is not int or value < 0:
            raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
    for name in ("header_timeout", "body_timeout", "idle_timeout", "send_timeout"):
        value = getattr(limits, name)
        if not isinstance(value, (int, float)) or math.isnan(value) or not 0 <= value < math.inf:
            raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")


def _call_disconnect_hooks(scope: Mapping[str, Any]) -> None:
    hooks = (scope.get("extensions") or {}).get(ON_DISCONNECT)
    if not hooks:
        return
    callbacks = list(hooks)
    hooks.clear()  # once each, whatever happens next
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("an %s callback raised", ON_DISCONNECT)


LimitedHttpToolsProtocol._configure(LimitedHttpToolsProtocol.limits)
