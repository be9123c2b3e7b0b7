"""Dynamic batching: requests of a model that declares ``max_batch_size``, merged into one call.

Requests merge along their first (batch) dimension when everything else about them agrees: the
same inputs, the same other dimensions, the same dtypes (:func:`batch_key`). :func:`merge` and
:func:`split` are the whole mechanism, shared by the Triton backend (whose own batcher chooses
the requests) and by :class:`Batcher`, which queues the requests of every other front end:

- a request that finds the model idle runs at once, alone: batching costs nothing unloaded;
- otherwise it waits until a predict slot frees (or ``max_queue_delay`` has passed since the
  oldest waiting request, when the model asks for a delay to fill batches); then the oldest
  waiting request and those that merge with it, in arrival order, up to ``max_batch_size``
  rows (cut to the largest of ``preferred_batch_sizes`` that fits, as Triton's dynamic batcher
  does), become one predict call;
- each caller gets exactly its own rows; a merged call that fails is run again request by
  request, so that only the request that broke it fails; a request whose deadline passes while
  it waits leaves the queue with its own :class:`DeadlineExceededError`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omi_adapters.errors import ConfigurationError, ModelStalledError, OmiError, OverloadedError
from omi_adapters.limits import OVERLOAD_RETRY_AFTER, STALL_RETRY_AFTER, Deadline, ModelGate, ModelHooks, expire

__all__ = ["BatchPolicy", "Batcher", "batch_key", "groups", "merge", "rows", "split"]

Arrays = dict[str, np.ndarray[Any, Any]]
#: Runs predict on merged inputs holding one gate slot: (arrays, rows, slot, deadline) -> checked outputs.
RunBatch = Callable[[Arrays, int, int, Deadline], Awaitable[Arrays]]


@dataclass(frozen=True)
class BatchPolicy:
    """How a model's requests are batched (Triton's ``dynamic_batching``, in seconds).

    Args:
        max_batch_size: the most rows one predict call takes.
        max_queue_delay: seconds the oldest waiting request may wait for others to fill a batch
            while a predict slot is free; 0 batches only what queues while the model is busy.
        preferred_batch_sizes: batch sizes the model runs best at; a batch is cut to the largest
            that fits the rows waiting.
    """

    max_batch_size: int
    max_queue_delay: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.max_queue_delay, (int, float)) or not 0 <= self.max_queue_delay < 3600:
            raise ConfigurationError(f"max_queue_delay must be seconds >= 0, got {self.max_queue_delay!r}")
        sizes = tuple(self.preferred_batch_sizes)
        if any(type(n) is not int or not 0 < n <= self.max_batch_size for n in sizes):
            raise ConfigurationError(
                f"preferred_batch_sizes must be integers from 1 to max_batch_size ({self.max_batch_size}), got {sizes!r}"
            )
        object.__setattr__(self, "preferred_batch_sizes", tuple(sorted(set(sizes))))

    def cut(self, rows: int) -> int:
        """How many of ``rows`` waiting rows (at most ``max_batch_size``) to take into one batch."""
        fitting = [n for n in self.preferred_batch_sizes if n <= rows]
        return fitting[-1] if fitting else rows


def batch_key(arrays: Mapping[str, np.ndarray[Any, Any]]) -> tuple[Any, ...]:
    """What requests must share to merge: their inputs' names, non-batch dimensions and dtypes."""
    return tuple(sorted((name, a.shape[1:], a.dtype.str) for name, a in arrays.items()))


def rows(arrays: Mapping[str, np.ndarray[Any, Any]]) -> int:
    """The batch size of a request (the first dimension, which every input shares)."""
    return int(next(iter(arrays.values())).shape[0]) if arrays else 0


def merge(items: Sequence[Mapping[str, np.ndarray[Any, Any]]]) -> tuple[Arrays, list[int]]:
    """One request of ``items`` concatenated along the batch dimension, and each one's rows.

    ``items`` must share a :func:`batch_key`. A single item is passed on as it is, uncopied.
    """
    sizes = [rows(item) for item in items]
    if len(items) == 1:
        return dict(items[0]), sizes
    merged = {name: np.concatenate([item[name] for item in items], axis=0) for name in items[0]}
    return merged, sizes


def split(outputs: Mapping[str, np.ndarray[Any, Any]], sizes: Sequence[int]) -> list[Arrays]:
    """The outputs of a merged call cut back into each request's own rows (views, no copies)."""
    if len(sizes) == 1:
        return [dict(outputs)]
    bounds = np.cumsum(sizes)[:-1]
    parts = {name: np.split(array, bounds, axis=0) for name, array in outputs.items()}
    return [{name: pieces[i] for name, pieces in parts.items()} for i in range(len(sizes))]


def groups(items: Iterable[tuple[int, Arrays]], max_batch_size: int) -> list[list[tuple[int, Arrays]]]:
    """Indexed requests in mergeable groups of at most ``max_batch_size`` rows, in arrival order."""
    by_key: dict[tuple[Any, ...], list[list[tuple[int, Arrays]]]] = {}
    for item in items:
        batches = by_key.setdefault(batch_key(item[1]), [[]])
        if batches[-1] and sum(rows(a) for _, a in batches[-1]) + rows(item[1]) > max_batch_size:
            batches.append([])
        batches[-1].append(item)
    return [batch for batches in by_key.values() for batch in batches]


class _Waiting:
    __slots__ = ("arrays", "deadline", "future", "key", "marks", "rows", "since", "timer")

    def __init__(
        self, arrays: Arrays, deadline: Deadline, future: asyncio.Future[Arrays], marks: list[float] | None = None
    ) -> None:
        #: When it started waiting; None once it left the queue (its batch started, or it gave up).
        self.since: float | None = time.perf_counter()
        self.arrays = arrays
        self.deadline = deadline
        self.future = future
        self.key = batch_key(arrays)
        self.rows = rows(arrays)
        self.timer: asyncio.TimerHandle | None = None
        #: Where to note when its batch's predict began and the batch's rows (traces).
        self.marks = marks


class Batcher:
    """The queue of one model's batching requests, and the calls that serve them.

    Args:
        name: the model's name, for messages.
        policy: how to batch.
        gate: the model's predict slots (a batch holds one slot, as one call).
        run: runs predict on merged inputs holding a slot; returns the checked outputs.
        max_queue: how many requests may wait; more are refused at once.
        hooks: what to report as requests wait (:class:`~omi_adapters.limits.ModelHooks`).
    """

    def __init__(
        self,
        name: str,
        policy: BatchPolicy,
        gate: ModelGate,
        run: RunBatch,
        max_queue: int,
        hooks: ModelHooks | None = None,
    ) -> None:
        self.name = name
        self.hooks = hooks or ModelHooks()
        self.policy = policy
        self.gate = gate
        self._run = run
        self.max_queue = max_queue
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._dispatcher: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        #: Rows of each predict call made, for tests and statistics (bounded).
        self.sizes: collections.deque[int] = collections.deque(maxlen=1024)

    @property
    def queued(self) -> int:
        """Requests waiting to be batched."""
        return len(self._waiting)

    async def submit(self, arrays: Arrays, deadline: Deadline, marks: list[float] | None = None) -> Arrays:
        """Run one request's ``arrays`` (rows along the first dimension) in some batch; its own outputs.

        ``marks``, when given, gets the time (``time.perf_counter()``) its batch's predict began
        and the batch's rows.
        """
        gate = self.gate
        if not self._waiting and not self.policy.max_queue_delay and gate.free:
            # Nothing to merge with and a slot free: run at once, as an unbatched model would.
            call = gate.take(deadline)
            self.hooks.waited(0.0)
            self.sizes.append(rows(arrays))
            if marks is not None:
                marks += (time.perf_counter(), rows(arrays))
            return await self._run(arrays, rows(arrays), call, deadline)
        if gate.stalled:
            raise ModelStalledError(
                f"model '{self.name}' is stalled: all {gate.concurrency} of its predict calls are running "
                "past their deadline",
                retry_after=STALL_RETRY_AFTER,
            )
        if len(self._waiting) >= self.max_queue:
            raise OverloadedError(
                f"model '{self.name}' has {self.max_queue} requests waiting, its queue limit (max_queue)",
                retry_after=OVERLOAD_RETRY_AFTER,
            )
        return await self._wait(self._enqueue([arrays], deadline, marks)[0])

    async def submit_many(self, items: Sequence[Arrays], deadline: Deadline) -> list[Arrays | BaseException]:
        """Run requests that arrive together (an OMI Run's items): they queue at once, so they merge."""
        if self.gate.stalled:
            stalled = ModelStalledError(f"model '{self.name}' is stalled", retry_after=STALL_RETRY_AFTER)
            return [stalled for _ in items]
        entries = self._enqueue(items, deadline)
        return list(await asyncio.gather(*(self._wait(e) for e in entries), return_exceptions=True))

    def _enqueue(self, items: Sequence[Arrays], deadline: Deadline, marks: list[float] | None = None) -> list[_Waiting]:
        loop = asyncio.get_running_loop()
        entries = []
        for arrays in items:
            entry = _Waiting(arrays, deadline, loop.create_future(), marks)
            entry.timer = loop.call_later(max(0.0, deadline.remaining()), expire, entry.future, deadline, self.name)
            entries.append(entry)
        self._waiting.extend(entries)
        self.hooks.queue(len(entries))
        self._arrived.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch(), name=f"batcher-{self.name}")
        return entries

    async def _wait(self, entry: _Waiting) -> Arrays:
        try:
            return await entry.future
        finally:
            if entry.since is not None:  # it never left the queue for a batch (expired, cancelled)
                entry.since = None
                self.hooks.dequeue(1)
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done():
                entry.future.cancel()  # the caller went away: the dispatcher skips it

    def _live(self) -> None:
        while self._waiting and self._waiting[0].future.done():
            self._waiting.popleft()

    async def _dispatch(self) -> None:
        delay = self.policy.max_queue_delay
        loop = asyncio.get_running_loop()
        while True:
            self._live()
            if not self._waiting:
                return
            first = self._waiting[0]
            if delay:
                # Hold the oldest request for up to the delay, unless a full batch is already there.
                waited_until = loop.time() + delay
                while self._rows_like(first) < self.policy.max_batch_size and not first.future.done():
                    left = waited_until - loop.time()
                    if left <= 0:
                        break
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), left)
                    except TimeoutError:
                        break
                self._live()
                if not self._waiting:
                    return
                first = self._waiting[0]
            try:
                call = await self.gate.acquire(first.deadline)
            except OmiError as exc:
                # Stalled, or the oldest request's deadline passed waiting for a slot.
                if not first.future.done():
                    first.future.set_exception(exc)
                continue
            batch = self._take(first.key)
            if not batch:
                self.gate.release(call)
                continue
            task = loop.create_task(self._execute(batch, call))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _rows_like(self, first: _Waiting) -> int:
        return sum(e.rows for e in self._waiting if e.key == first.key and not e.future.done())

    def _take(self, key: tuple[Any, ...]) -> list[_Waiting]:
        """The waiting requests of ``key`` that make the next batch, in arrival order."""
        limit = self.policy.max_batch_size
        live = [e for e in self._waiting if e.key == key and not e.future.done()]
        total, chosen = 0, []
        for entry in live:
            if total + entry.rows > limit:
                break
            chosen.append(entry)
            total += entry.rows
        cut = self.policy.cut(total)
        while total > cut and len(chosen) > 1:
            total -= chosen.pop().rows
        taken = set(map(id, chosen))
        self._waiting = collections.deque(e for e in self._waiting if id(e) not in taken and not e.future.done())
        return chosen

    async def _execute(self, batch: list[_Waiting], call: int) -> None:
        now = time.perf_counter()
        hooks = self.hooks
        left = 0
        for entry in batch:
            if entry.since is not None:
                hooks.waited(now - entry.since)
                entry.since = None
                left += 1
        hooks.dequeue(left)
        merged, sizes = merge([e.arrays for e in batch])
        total = sum(sizes)
        for entry in batch:
            if entry.marks is not None:
                entry.marks += (now, total)
        # The batch may run until the last of its requests' deadlines; each request still fails
        # at its own (its timer), without cutting the others short.
        deadline = max((e.deadline for e in batch), key=lambda d: d.at)
        self.sizes.append(total)
        try:
            outputs = await self._run(merged, total, call, deadline)
        except BaseException as exc:
            if len(batch) == 1 or isinstance(exc, asyncio.CancelledError):
                for entry in batch:
                    _fail(entry.future, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            # Which request broke the batch is unknown: run each alone, so that only it fails.
            for entry in batch:
                if entry.future.done():
                    continue
                try:
                    alone = await self.gate.acquire(entry.deadline)
                    _deliver(entry.future, await self._run(entry.arrays, entry.rows, alone, entry.deadline))
                except BaseException as error:
                    _fail(entry.future, error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
            return
        for entry, part in zip(batch, split(outputs, sizes)):
            _deliver(entry.future, part)


def _deliver(future: asyncio.Future[Arrays], outputs: Arrays) -> None:
    if not future.done():
        future.set_result(outputs)


def _fail(future: asyncio.Future[Arrays], exc: BaseException) -> None:
    if not future.done():
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
