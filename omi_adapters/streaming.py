"""Streaming predicts: the yields of a generator, one response each, under the request's bounds.

A streaming model's predict is a generator (or returns an iterator): each yielded item is one
response. :func:`open_source` turns the call into a :class:`Source` whose :meth:`Source.next`
gives the items one by one on the event loop, whichever way predict runs:

- an async generator is awaited on the loop, each step cut short by the request's deadline;
- a sync generator with ``run_in_thread=False`` is stepped on the loop;
- any other sync generator runs in one of the model's threads, which hands the items over
  through a small bounded buffer (:data:`STREAM_BUFFER` items): when the reader is slow (a
  client that reads slowly, a full socket), the thread waits at its next yield instead of the
  server buffering without bound.

:meth:`Source.aclose` stops the generator: ``close()`` / ``aclose()`` run its ``finally``
blocks (in its own thread for a thread-run one, at its next yield) and its predict slot is given
back when it has stopped. :func:`collect` joins a stream into one response, for the front ends
that answer one request with one reply (``infer``, ``generate``, OMI ``Run``, Lambda).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from omi_adapters.contract import Model
from omi_adapters.errors import OmiError, PayloadTooLargeError, PredictError
from omi_adapters.limits import Deadline, ModelGate
from omi_adapters.types import ARRAY_DTYPES, InferenceResponse, OutputTensor

__all__ = ["STREAM_BUFFER", "Source", "collect", "open_source"]

#: Items a thread-run generator may produce ahead of the reader before it waits.
STREAM_BUFFER = 16

_END = object()


class Source:
    """The items of one streaming predict call; :meth:`next` raises ``StopAsyncIteration`` at the end."""

    async def next(self) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the generator (its ``finally`` blocks run) and give its predict slot back."""


def open_source(
    model: Model, predict: Callable[..., Any], arrays: dict[str, Any], gate: ModelGate, call: int, deadline: Deadline
) -> Source:
    """Start ``predict(**arrays)`` holding slot ``call`` of ``gate``; the source of its items.

    The slot is released by :meth:`Source.aclose` (or, for a thread-run generator, when its
    thread has stopped), never before the generator has stopped.
    """
    if model.is_async:
        return _AsyncSource(model, predict, arrays, gate, call, deadline)
    if model.run_in_thread:
        return _ThreadSource(model, predict, arrays, gate, call, deadline)
    return _LoopSource(model, predict, arrays, gate, call, deadline)


def _failed(model: Model, exc: BaseException) -> OmiError:
    from omi_adapters.dataplane import predict_failed

    return exc if isinstance(exc, OmiError) else predict_failed(model, exc)


def _not_iterable(model: Model, value: Any) -> PredictError:
    return PredictError(
        f"model '{model.name}' streams, so predict must return an iterator or async iterator, "
        f"got {type(value).__name__}"
    )


class _AsyncSource(Source):
    """An async generator (or an async predict returning an async iterator), awaited on the loop.

    One timer per stream, not one per step, holds the deadline: when it fires during a step,
    the reading task is cancelled and the step fails with the deadline's error.
    """

    def __init__(
        self,
        model: Model,
        predict: Callable[..., Any],
        arrays: dict[str, Any],
        gate: ModelGate,
        call: int,
        deadline: Deadline,
    ) -> None:
        self._model = model
        self._gate: ModelGate | None = gate
        self._call = call
        self._deadline = deadline
        self._predict = predict
        self._arrays = arrays
        self._iterator: Any = None
        self._expired = False
        self._stepping: asyncio.Task[Any] | None = None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + deadline.remaining(), self._expire)

    def _expire(self) -> None:
        self._expired = True
        if self._stepping is not None:
            self._stepping.cancel()

    async def next(self) -> Any:
        model = self._model
        if self._expired:
            raise self._deadline.exceeded(model.name)
        task = self._stepping = asyncio.current_task()
        try:
            if self._iterator is None:
                result = self._predict(**self._arrays)
                if inspect.isawaitable(result) and not hasattr(result, "__anext__"):
                    result = await result  # stream=True on an async def returning an iterator
                if not hasattr(result, "__anext__"):
                    raise _not_iterable(model, result)
                self._iterator = result
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            raise
        except asyncio.CancelledError as exc:
            if self._expired and task is not None and task.uncancel() == 0:
                raise self._deadline.exceeded(model.name) from None
            if task is not None and task.cancelling():
                raise  # a client that went away, the server stopping
            raise _failed(model, exc) from exc
        except BaseException as exc:  # user code: its failure fails this stream only
            raise _failed(model, exc) from exc
        finally:
            self._stepping = None

    async def aclose(self) -> None:
        self._timer.cancel()
        gate, self._gate = self._gate, None
        if gate is None:
            return
        try:
            close = getattr(self._iterator, "aclose", None)
            if close is not None:
                await close()
        except Exception as exc:  # noqa: BLE001 - a finally block that raised: logged, the stream is over anyway
            _failed(self._model, exc)
        finally:
            gate.release(self._call)


class _LoopSource(Source):
    """A sync generator stepped on the loop (``run_in_thread=False``): for steps of microseconds."""

    def __init__(
        self,
        model: Model,
        predict: Callable[..., Any],
        arrays: dict[str, Any],
        gate: ModelGate,
        call: int,
        deadline: Deadline,
    ) -> None:
        self._model = model
        self._gate: ModelGate | None = gate
        self._call = call
        self._deadline = deadline
        try:
            self._iterator = _iterator(model, predict(**arrays))
        except BaseException as exc:
            self._iterator = None
            self._release()
            raise _failed(model, exc) from exc

    async def next(self) -> Any:
        # No step can be cut short on the loop; the deadline is checked between steps.
        if self._deadline.remaining() <= 0:
            raise self._deadline.exceeded(self._model.name)
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None
        except BaseException as exc:  # user code
            raise _failed(self._model, exc) from exc

    async def aclose(self) -> None:
        try:
            close = getattr(self._iterator, "close", None)
            if close is not None and self._gate is not None:
                close()
        except Exception as exc:  # noqa: BLE001 - a finally block that raised: logged
            _failed(self._model, exc)
        finally:
            self._release()

    def _release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release(self._call)


def _iterator(model: Model, value: Any) -> Any:
    if not hasattr(value, "__next__"):
        if hasattr(value, "__iter__") and not isinstance(value, (np.ndarray, dict, str, bytes)):
            return iter(value)
        raise _not_iterable(model, value)
    return value


class _ThreadSource(Source):
    """A sync generator run in one of the model's threads, handing its items over a bounded buffer.

    The thread waits (on a condition) while :data:`STREAM_BUFFER` items are unread, until half
    of them are read; the loop is woken (one ``call_soon_threadsafe``) only when it is waiting
    for an item.
    """

    def __init__(
        self,
        model: Model,
        predict: Callable[..., Any],
        arrays: dict[str, Any],
        gate: ModelGate,
        call: int,
        deadline: Deadline,
    ) -> None:
        self._model = model
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self._items: collections.deque[tuple[bool, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        gate.run_detached(call, self._run, predict, arrays)

    # --- the model's thread ---------------------------------------------------------------

    def _run(self, predict: Callable[..., Any], arrays: dict[str, Any]) -> None:
        iterator = None
        try:
            iterator = _iterator(self._model, predict(**arrays))
            while True:
                with self._room:
                    while len(self._items) >= STREAM_BUFFER and not self._closed:
                        self._room.wait()
                    if self._closed:
                        break
                try:
                    item = next(iterator)
                except StopIteration:
                    self._push(True, _END)
                    return
                self._push(True, item)
        except BaseException as exc:  # noqa: BLE001 - user code: delivered to the reader
            self._push(False, exc)
            return
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()  # the reader stopped: run the generator's finally blocks, here
            except BaseException as exc:  # noqa: BLE001 - logged; nobody reads the stream any more
                _failed(self._model, exc)

    def _push(self, ok: bool, value: Any) -> None:
        with self._lock:
            self._items.append((ok, value))
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            try:
                self._loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:
                pass  # the loop has closed

    # --- the loop -------------------------------------------------------------------------

    async def next(self) -> Any:
        while True:
            with self._lock:
                if self._items:
                    ok, value = self._items.popleft()
                    if len(self._items) == STREAM_BUFFER // 2:
                        # The thread waits for a full buffer to drain by half, not for each
                        # item: one wake-up (and GIL hand-over) per half buffer.
                        self._room.notify()
                    break
                waiter = self._waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(self._deadline.remaining()):
                    await waiter
            except TimeoutError:
                raise self._deadline.exceeded(self._model.name) from None
        if not ok:
            raise _failed(self._model, value) from value
        if value is _END:
            raise StopAsyncIteration
        return value

    async def aclose(self) -> None:
        # The thread stops at its next yield and closes the generator there; the slot is
        # released when it has (run_detached), as a sync predict past its deadline keeps its own.
        with self._room:
            self._closed = True
            self._items.clear()
            self._room.notify_all()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def collect(model: Model, responses: list[InferenceResponse], request_id: str | None) -> InferenceResponse:
    """One response holding every yield of a stream: each output's yields joined along the first dimension.

    A yield of a 0-d array counts as one element; a stream that yielded nothing gives empty
    outputs. The joined outputs are not checked against the declared shapes (each yield was).
    """
    outputs: list[OutputTensor] = []
    names = [o.name for o in responses[0].outputs] if responses else [t.name for t in model.outputs]
    by_name = {t.name: t for t in model.outputs}
    for index, name in enumerate(names):
        spec = by_name[name]
        parts = [np.atleast_1d(r.outputs[index].data) for r in responses]
        if parts:
            tails = {p.shape[1:] for p in parts}
            if len(tails) > 1:
                raise PredictError(
                    f"output '{name}': the yields of model '{model.name}' cannot be joined into one response "
                    f"(their shapes after the first dimension differ: {sorted(map(list, tails))}); "
                    "ask for the stream instead"
                )
            data = np.concatenate(parts, axis=0)
        else:
            tail = tuple(max(d, 0) for d in spec.shape[1:])
            data = np.empty((0, *tail), dtype=ARRAY_DTYPES[spec.datatype])
        outputs.append(OutputTensor(name=name, datatype=spec.datatype, shape=tuple(data.shape), data=data))
    return InferenceResponse(model_name=model.name, model_version=model.version, outputs=outputs, id=request_id)


def collected_bytes(response: InferenceResponse) -> int:
    """About how much memory a response's outputs hold (BYTES elements by their length)."""
    total = 0
    for output in response.outputs:
        data = output.data
        if data.dtype == object:
            total += sum(len(item) if isinstance(item, (bytes, str)) else 8 for item in data.reshape(-1))
        else:
            total += data.nbytes
    return total


def check_collected(model: Model, held: int, limit: int) -> None:
    """Refuse to hold more than ``limit`` bytes of collected yields (--max-inflight-bytes)."""
    if limit and held > limit:
        raise PayloadTooLargeError(
            f"the yields of model '{model.name}' pass {limit} bytes, more than one reply may hold "
            "(--max-inflight-bytes); ask for the stream (generate_stream, ModelStreamInfer) instead"
        )
