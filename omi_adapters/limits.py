"""The bounds every inference request passes, whatever its front end: deadline, admission, slots.

- :class:`Deadline`: when a request must be answered, the earliest of the client's deadline,
  the server's ``--request-timeout`` and the model's declared run timeout.
- :class:`Admission`: the server-wide bounds on requests in flight and the request bytes they
  hold. Past either a request is refused at once (:class:`OverloadedError`), before its body
  is read where the front end knows the size, instead of growing memory without bound.
- :class:`ModelGate`: one model's bound on concurrent predicts, its own bounded queue and its
  own thread pool, so that hung predicts of one model never delay another. Python cannot stop
  a thread: a sync predict past its deadline is answered 504 but keeps its slot until it
  returns. When every slot is held that way the model is *stalled*: new requests get a fast
  :class:`ModelStalledError` (503, ``Retry-After``), readiness is false, and liveness turns
  false once the stall has lasted ``stall_timeout`` (the platform then replaces the process).

This module only counts and waits; :class:`~omi_adapters.dataplane.DataPlane` applies it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from omi_adapters.errors import (
    ConfigurationError,
    DeadlineExceededError,
    ModelStalledError,
    OverloadedError,
)

__all__ = [
    "DEFAULT_MAX_INFLIGHT",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_REQUEST_TIMEOUT",
    "Admission",
    "Deadline",
    "HttpLimits",
    "Limits",
    "ModelGate",
    "ModelHooks",
    "Ticket",
    "default_predict_threads",
    "expire",
    "in_thread",
]

T = TypeVar("T")

#: Seconds a request may take, unless the client or the model asks for less.
DEFAULT_REQUEST_TIMEOUT = 60.0
#: Inference requests in flight (queued or running) in one server process.
DEFAULT_MAX_INFLIGHT = 256
#: Request bytes those requests may hold together: with decoding at about 3x, this keeps a
#: process well inside the 512M that the generated manifests give a pod by default.
DEFAULT_MAX_INFLIGHT_BYTES = 96 * 1024 * 1024
#: Requests that may wait for one model's predict slot.
DEFAULT_MAX_QUEUE = 128
#: Concurrent calls of an async predict, which need no thread each.
DEFAULT_ASYNC_CONCURRENCY = 64
#: Liveness turns false when a model has been stalled this long.
DEFAULT_STALL_TIMEOUT = 60.0
#: What ``Retry-After`` says when a bound is full: soon, since requests finish in milliseconds.
OVERLOAD_RETRY_AFTER = 1.0
#: And when a model is stalled: its hung calls will not return soon.
STALL_RETRY_AFTER = 10.0


def default_predict_threads() -> int:
    """Python's own thread-pool size, ``min(32, cores + 4)``: concurrent calls of a sync predict."""
    import os

    return min(32, (os.cpu_count() or 1) + 4)


def _nothing(*_: Any) -> None:
    return None


class ModelHooks:
    """What the DataPlane reports about one model's requests as they pass: callables, bound once.

    The default does nothing; :mod:`omi_adapters.metrics` binds them to Prometheus series of the
    model, so that the hot path makes no label lookup and builds no dict.

    Attributes:
        enter, leave: a request of the model starts and ends (in flight), with a count.
        queue, dequeue: requests start and stop waiting for a predict slot or a batch, with a count.
        waited: seconds one request waited for its predict slot or batch.
        predicted: seconds one predict call took and the rows it served (1 unless it batches).
    """

    __slots__ = ("dequeue", "enter", "leave", "predicted", "queue", "waited")

    def __init__(self) -> None:
        self.enter: Callable[[int], None] = _nothing
        self.leave: Callable[[int], None] = _nothing
        self.queue: Callable[[int], None] = _nothing
        self.dequeue: Callable[[int], None] = _nothing
        self.waited: Callable[[float], None] = _nothing
        self.predicted: Callable[[float, int], None] = _nothing


@dataclass(frozen=True)
class Limits:
    """The server-wide limits; every one is a flag of ``omi serve`` with this default."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    #: Default concurrency of a sync predict (a model's ``max_concurrency`` overrides it).
    predict_threads: int | None = None
    #: Default queue bound of a model (a model's ``max_queue`` overrides it).
    max_queue: int = DEFAULT_MAX_QUEUE
    #: 0 never turns liveness false.
    stall_timeout: float = DEFAULT_STALL_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("max_inflight", "max_inflight_bytes", "max_queue"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
        if self.predict_threads is not None and (type(self.predict_threads) is not int or self.predict_threads < 1):
            raise ConfigurationError(f"predict_threads must be an integer >= 1, got {self.predict_threads!r}")
        for name in ("request_timeout", "stall_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0 or math.isnan(value):
                raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.request_timeout == 0:
            raise ConfigurationError("request_timeout must be > 0: every request has a deadline")


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP/1.1 client may take of the server (:mod:`omi_adapters.http_protocol` enforces it).

    Each is a flag of ``omi serve`` (``--max-header-bytes``, ...), with this default.
    """

    #: The request line and all header lines of one request; more get 431.
    max_header_bytes: int = 64 * 1024
    #: Header fields of one request; more get 431.
    max_headers: int = 100
    #: From a request's first byte until its headers are complete (slowloris); then 408.
    header_timeout: float = 10.0
    #: From the end of the headers until the whole body has arrived; then 408.
    body_timeout: float = 60.0
    #: A connection with no request in progress (new, or kept alive) is closed after this.
    idle_timeout: float = 5.0
    #: A reply blocked by a client that does not read is abandoned after this.
    send_timeout: float = 30.0
    #: Open connections; past it a new one gets 503 and is closed.
    max_connections: int = 1000


class Deadline:
    """A moment on the monotonic clock by which a request must be answered, and which bound set it."""

    __slots__ = ("at", "reason")

    def __init__(self, at: float, reason: str) -> None:
        self.at = at
        self.reason = reason

    @classmethod
    def earliest(cls, *bounds: tuple[float | None, str]) -> Deadline:
        """The deadline of the smallest of ``(seconds, reason)`` bounds (None: no bound); one must be set."""
        chosen: tuple[float, str] | None = None
        for seconds, reason in bounds:
            if seconds is not None and (chosen is None or seconds < chosen[0]):
                chosen = (seconds, reason)
        if chosen is None:
            raise ConfigurationError("a deadline needs at least one bound")
        return cls(time.monotonic() + chosen[0], chosen[1])

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def exceeded(self, model: str) -> DeadlineExceededError:
        """The error a request of ``model`` gets when this deadline passes."""
        return DeadlineExceededError(f"model '{model}' did not answer within {self.reason}")


class Ticket:
    """One admitted request's share of the in-flight bounds; :meth:`close` gives it back."""

    __slots__ = ("_admission", "nbytes")

    def __init__(self, admission: Admission, nbytes: int) -> None:
        self._admission: Admission | None = admission
        self.nbytes = nbytes

    def grow(self, nbytes: int) -> None:
        """Account ``nbytes`` more (a body read in chunks); raises :class:`OverloadedError` past the bound."""
        admission = self._admission
        if admission is not None:
            admission.reserve(nbytes)
            self.nbytes += nbytes

    def close(self) -> None:
        """Leave the bounds (idempotent)."""
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.requests -= 1
            admission.nbytes -= self.nbytes

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Admission:
    """Counts requests in flight and the bytes they hold, refusing those past the bounds."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.nbytes = 0

    def enter(self, nbytes: int = 0) -> Ticket:
        """Admit one request holding ``nbytes``, or raise :class:`OverloadedError`."""
        if self.requests >= self.max_requests:
            raise OverloadedError(
                f"the server has {self.requests} requests in flight, its limit (--max-inflight)",
                retry_after=OVERLOAD_RETRY_AFTER,
            )
        self.reserve(nbytes)
        self.requests += 1
        return Ticket(self, nbytes)

    def reserve(self, nbytes: int) -> None:
        if nbytes and self.nbytes + nbytes > self.max_bytes:
            if nbytes > self.max_bytes:
                message = f"a request of {nbytes} bytes is more than the server holds in flight (--max-inflight-bytes)"
            else:
                message = (
                    f"requests in flight hold {self.nbytes} bytes; {nbytes} more would pass the limit of "
                    f"{self.max_bytes} bytes (--max-inflight-bytes)"
                )
            raise OverloadedError(message, retry_after=OVERLOAD_RETRY_AFTER)
        self.nbytes += nbytes


class ModelGate:
    """One model's predict slots, its bounded queue of waiting requests and its thread pool.

    Args:
        name: the model's name, for messages.
        concurrency: how many predict calls may run at once.
        max_queue: how many requests may wait for a slot; more are refused at once.
        thread_prefix: the name of the pool's threads (they start on first use).
    """

    def __init__(self, name: str, concurrency: int, max_queue: int, thread_prefix: str) -> None:
        self.name = name
        self.concurrency = concurrency
        self.max_queue = max_queue
        self._free = concurrency
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: call id -> the monotonic deadline of the request holding that slot.
        self._running: dict[int, float] = {}
        self._ids = itertools.count()
        self._thread_prefix = thread_prefix
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # --- state -------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Predict calls holding a slot now (stuck ones included)."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return sum(1 for w in self._waiters if not w.done())

    def stalled_for(self) -> float:
        """Seconds since every slot became held past its deadline; 0 when the model is not stalled."""
        if self._free or len(self._running) < self.concurrency:
            return 0.0
        latest = max(self._running.values())
        now = time.monotonic()
        return now - latest if latest < now else 0.0

    @property
    def stalled(self) -> bool:
        """Every slot is held by a call past its deadline."""
        return self.stalled_for() > 0.0

    # --- slots -------------------------------------------------------------------------------

    @property
    def free(self) -> bool:
        """A slot can be taken now, with nobody ahead in the queue."""
        return self._free > 0 and not self._waiters

    def take(self, deadline: Deadline) -> int:
        """Take a free slot (check :attr:`free` first) for a request with ``deadline``."""
        self._free -= 1
        return self._hold(deadline)

    async def acquire(self, deadline: Deadline) -> int:
        """Take a slot for a request with ``deadline``: at once, or after waiting in the queue.

        Raises:
            ModelStalledError: every slot is stuck past its deadline (answered at once).
            OverloadedError: the queue is full.
            DeadlineExceededError: the deadline passed while waiting.
        """
        if self._free and not self._waiters:
            return self.take(deadline)
        if self.stalled:
            raise ModelStalledError(
                f"model '{self.name}' is stalled: all {self.concurrency} of its predict calls are running "
                "past their deadline",
                retry_after=STALL_RETRY_AFTER,
            )
        if self.queued >= self.max_queue:
            raise OverloadedError(
                f"model '{self.name}' has {self.max_queue} requests waiting, its queue limit (max_queue)",
                retry_after=OVERLOAD_RETRY_AFTER,
            )
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(max(0.0, deadline.remaining()), expire, waiter, deadline, self.name)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_slot()  # handed a slot just as this request gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        return self._hold(deadline)

    def release(self, call: int) -> None:
        """Give back the slot of ``call`` (from :meth:`acquire`)."""
        del self._running[call]
        self._release_slot()

    def _hold(self, deadline: Deadline) -> int:
        call = next(self._ids)
        self._running[call] = deadline.at
        return call

    def _release_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self._free += 1

    # --- threads -----------------------------------------------------------------------------

    async def in_thread(self, call: int, deadline: Deadline, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in this model's pool holding slot ``call``, and await it until ``deadline``.

        The slot is released when the thread returns, not when the caller stops waiting: a call
        past its deadline still occupies a thread, and counting it is what detects a stall.
        The worker hands its outcome back with one ``call_soon_threadsafe`` (cheaper than
        ``run_in_executor``'s chained futures).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        try:
            _hand_off(self._pool(), loop, future, fn, args, functools.partial(self.release, call))
        except BaseException:
            self.release(call)
            raise
        timer = loop.call_later(max(0.0, deadline.remaining()), expire, future, deadline, self.name)
        try:
            return await future
        finally:
            timer.cancel()

    def run_detached(self, call: int, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in this model's pool holding slot ``call``, without awaiting it.

        For work that reports by other means (a streaming predict's thread hands its items
        over itself): the slot is released when the thread returns, as in :meth:`in_thread`.
        ``fn`` must not raise; what it raises is dropped.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            _hand_off(self._pool(), loop, future, fn, args, functools.partial(self.release, call))
        except BaseException:
            self.release(call)
            raise

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, thread_name_prefix=self._thread_prefix
            )
        return self._executor

    def shutdown(self) -> None:
        """Stop the pool without waiting for calls still running (they have nobody to answer)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


async def in_thread(executor: concurrent.futures.Executor, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in ``executor`` and await its result (or exception) on this loop.

    ``loop.run_in_executor`` chains a concurrent future to an asyncio one, which costs about
    as much again as the thread hand-off itself; the worker instead hands its outcome straight
    back with one ``call_soon_threadsafe``.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _hand_off(executor, loop, future, fn, args)
    return await future


def _hand_off(
    executor: concurrent.futures.Executor,
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    then: Callable[[], None] | None = None,
) -> None:
    """Run ``fn(*args)`` in ``executor``; on ``loop``, call ``then`` and settle ``future`` with its outcome."""

    def work() -> None:
        try:
            outcome: tuple[Callable[..., None], Any] = (_set_result, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting coroutine
            outcome = (_set_exception, exc)
        try:
            loop.call_soon_threadsafe(_settle, then, future, outcome)
        except RuntimeError:
            pass  # the loop has closed: nobody is waiting any more

    executor.submit(work)


def _settle(
    then: Callable[[], None] | None, future: asyncio.Future[Any], outcome: tuple[Callable[..., None], Any]
) -> None:
    if then is not None:
        then()
    outcome[0](future, outcome[1])


def expire(future: asyncio.Future[Any], deadline: Deadline, model: str) -> None:
    """Fail ``future`` with ``deadline``'s error unless it is settled (a ``call_later`` callback)."""
    if not future.done():
        future.set_exception(deadline.exceeded(model))


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # the waiter may have given up (deadline, or a client that went away)
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
