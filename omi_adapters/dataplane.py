"""The transport-neutral dispatcher every front end calls: health, metadata and inference.

Front ends only translate between their wire format and :class:`InferenceRequest` /
:class:`InferenceResponse`; finding the model, waiting for its load, checking inputs, the
request's deadline, the model's predict slots (:mod:`omi_adapters.limits`), running predict
(sync functions in the model's own threads unless it says otherwise, async ones on the loop)
and checking outputs happen here, once. Front ends admit a request (:meth:`DataPlane.admit`)
as soon as they know its size, before reading or decoding it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Iterable
from typing import Any, TypeVar

from omi_adapters import __version__, classification, tracing
from omi_adapters.batching import Batcher
from omi_adapters.contract import Model
from omi_adapters.errors import (
    ConfigurationError,
    ErrorCode,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OmiError,
    PredictError,
)
from omi_adapters.limits import (
    DEFAULT_ASYNC_CONCURRENCY,
    Admission,
    Deadline,
    Limits,
    ModelGate,
    ModelHooks,
    Ticket,
    in_thread,
)
from omi_adapters.limits import default_predict_threads as _default_threads
from omi_adapters.loading import LoadPolicy, LoadState
from omi_adapters.types import InferenceRequest, InferenceResponse, OutputTensor

__all__ = [
    "EXTENSIONS",
    "PREDICT_THREAD_PREFIX",
    "SERVER_NAME",
    "DataPlane",
    "ModelHooks",
    "Observer",
    "call_async",
    "call_sync",
    "in_thread",
    "predict_failed",
]

SERVER_NAME = "omi-adapters"
#: The names of the threads that run sync predict functions (and loads) start with this.
PREDICT_THREAD_PREFIX = "omi-predict"
#: Reported by server metadata: the Triton conventions this server follows (Triton's protocol extensions).
#: ``statistics`` is added when the metrics are recorded (they are its figures).
EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "model_repository")

#: A stream lets the event loop turn after its first response and after every 16 (a mask).
_YIELD_EVERY = 15

log = logging.getLogger("omi_adapters")
T = TypeVar("T")


class Observer:
    """Sees every inference request of every protocol; this one records nothing.

    Front ends call :meth:`request` once per answered request (an OMI item is a request) with
    their protocol's outcome label, the error's :class:`ErrorCode` if it failed, the seconds it
    took and its bytes. :mod:`omi_adapters.metrics` implements it with prometheus-client.
    """

    def hooks(self, model: Model) -> ModelHooks:
        """The hooks of ``model``, made once when the DataPlane is built."""
        return ModelHooks()

    def request(
        self,
        protocol: str,
        model: Model | None,
        outcome: str,
        error: ErrorCode | None,
        seconds: float,
        nbytes_in: int,
        nbytes_out: int,
    ) -> None:
        """One request answered; ``model`` is None when no served model matched its name."""

    def refresh(self, dataplane: DataPlane) -> None:
        """Read the models' states (loads finished, readiness) into what is recorded."""


class DataPlane:
    """The models of one server process, and the requests they serve.

    Args:
        models: the models to serve (names and versions unique).
        limits: the server-wide deadline and bounds (defaults as ``omi serve`` documents them).
        executor: runs loads and the decoding of large requests (predicts run in each model's
            own threads); default: a pool of its own.
        observer: sees every request (metrics); default: one that records nothing.
        model_control: clients may load and unload models (the model repository extension's
            calls); off, those calls are refused (``omi serve --model-control-mode``).
    """

    def __init__(
        self,
        models: Iterable[Model],
        *,
        limits: Limits | None = None,
        executor: concurrent.futures.Executor | None = None,
        observer: Observer | None = None,
        model_control: bool = False,
    ) -> None:
        self._models: dict[str, dict[str, Model]] = {}
        #: Whether the model repository extension's load and unload are served.
        self.model_control = model_control
        for model in models:
            versions = self._models.setdefault(model.name, {})
            if model.version in versions:
                raise ConfigurationError(f"model '{model.name}' version {model.version} is given twice")
            versions[model.version] = model
        if not self._models:
            raise ConfigurationError("no models to serve")
        #: Each name's newest version: what a request that names no version gets.
        self._newest = {name: next(reversed(versions.values())) for name, versions in self._models.items()}
        self.limits = limits = limits or Limits()
        #: Runs loads and large decodes; threads start on first use.
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(thread_name_prefix=PREDICT_THREAD_PREFIX)
        self.admission = Admission(limits.max_inflight, limits.max_inflight_bytes)
        threads = limits.predict_threads or _default_threads()
        self.observer = observer = observer or Observer()
        #: Writes the access line of each request, when the front ends should (``omi serve --access-log``).
        self.access_log: Any = None
        self._gates: dict[Model, ModelGate] = {}
        self._batchers: dict[Model, Batcher] = {}
        self._hooks: dict[Model, ModelHooks] = {}
        for model in self.models:
            self._hooks[model] = hooks = observer.hooks(model)
            default = DEFAULT_ASYNC_CONCURRENCY if model.is_async else threads
            queue = limits.max_queue if model.max_queue is None else model.max_queue
            gate = ModelGate(
                model.name, model.max_concurrency or default, queue, f"{PREDICT_THREAD_PREFIX}-{model.name}"
            )
            self._gates[model] = gate
            if model.batch_policy is not None:
                self._batchers[model] = Batcher(
                    model.name, model.batch_policy, gate, functools.partial(self._run_batch, model), queue, hooks
                )
        self._server_timeout = (limits.request_timeout, f"the server's request timeout ({limits.request_timeout:g}s)")
        self._loads: dict[Model, asyncio.Future[Any]] = {}

    @property
    def models(self) -> list[Model]:
        """Every served model (all versions), in the order given."""
        return [m for versions in self._models.values() for m in versions.values()]

    def gate(self, model: Model) -> ModelGate:
        """The predict slots, queue and threads of ``model``."""
        return self._gates[model]

    def batcher(self, model: Model) -> Batcher | None:
        """The dynamic batcher of ``model``, if it batches."""
        return self._batchers.get(model)

    def start(self) -> None:
        """Start every model's load as its policy says (eager models load here)."""
        for model in self.models:
            model.start()

    def close(self) -> None:
        """Stop the thread pools without waiting for calls still running (nobody awaits them)."""
        for gate in self._gates.values():
            gate.shutdown()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def live(self) -> bool:
        """The server can answer: no model has been stalled for longer than ``stall_timeout``.

        A model whose every predict slot is held by a hung call cannot recover by itself
        (Python cannot stop a thread); liveness turning false is how a platform learns that
        the process must be replaced (a Kubernetes liveness probe on ``/v2/health/live``).
        """
        limit = self.limits.stall_timeout
        return not limit or all(g.stalled_for() <= limit for g in self._gates.values())

    def ready(self) -> bool:
        """Every model in service can take requests now (see :meth:`model_ready`).

        A model taken out of service (the model repository extension's unload) does not count,
        as Triton counts only the models it has loaded.
        """
        return all(self.model_ready(m) for m in self.models if not m.unloaded)

    def model_ready(self, model: Model) -> bool:
        """The model is loaded and can serve now (not stalled).

        A lazy model that nobody has asked for yet starts loading in the background when
        readiness is asked: the honest answer is "not yet", and a probe that waits for
        readiness (Knative, KServe, Kubernetes) must not wait forever for a request that the
        platform will only send once the model is ready.
        """
        if model.ready:
            return not self._gates[model].stalled
        if model.load_policy is LoadPolicy.LAZY and model.state is LoadState.UNLOADED:
            model.load_in_background()
        return False

    def get(self, name: str, version: str | None = None) -> Model:
        """The model of that name (and version; the newest when none is given)."""
        if not version:
            newest = self._newest.get(name)
            if newest is None:
                raise ModelNotFoundError(f"unknown model '{name}'")
            return newest
        versions = self._models.get(name)
        if versions is None:
            raise ModelNotFoundError(f"unknown model '{name}'")
        model = versions.get(version)
        if model is None:
            raise ModelNotFoundError(f"model '{name}' has no version '{version}' (versions: {', '.join(versions)})")
        return model

    def server_metadata(self) -> dict[str, Any]:
        """``$metadata_server_response``."""
        extensions = list(EXTENSIONS)
        if getattr(self.observer, "collect_registry", None) is not None:
            extensions.append("statistics")
        return {"name": SERVER_NAME, "version": __version__, "extensions": extensions}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """``$metadata_model_response`` (the OIP's model metadata)."""
        model = self.get(name, version)
        model.check_in_service()  # as Triton, which knows no unloaded model
        return {
            "name": model.name,
            "versions": list(self._models[model.name]),
            "platform": "python",
            "inputs": [t.to_dict() for t in model.inputs],
            "outputs": [t.to_dict() for t in model.outputs],
        }

    def admit(self, nbytes: int = 0) -> Ticket:
        """Admit one request holding ``nbytes`` into the server-wide in-flight bounds.

        Raises :class:`~omi_adapters.errors.OverloadedError` past them. Close the ticket (or
        use it as a context manager) when the request is answered.
        """
        return self.admission.enter(nbytes)

    def deadline(self, model: Model, timeout: float | None = None) -> Deadline:
        """The deadline of a request of ``model`` arriving now whose client allows ``timeout`` seconds."""
        run = model.run_timeout
        return Deadline.earliest(
            self._server_timeout,
            (run, f"its run timeout ({model.metadata.timeouts.run})") if run is not None else (None, ""),
            (timeout, f"the client's deadline ({timeout:.3g}s)") if timeout is not None else (None, ""),
        )

    async def wait_ready(self, model: Model, timeout: float | None = None) -> Any:
        """Return the model's predict function, loading it off the loop if it must load.

        Every caller waits on one load, whose thread a request never holds; a caller that
        gives up after ``timeout`` seconds gets :class:`ModelNotReadyError` while the load goes on.
        """
        predict = model.loaded()
        if predict is not None:
            return predict
        load = self._loads.get(model)
        if load is None or load.done():
            load = asyncio.ensure_future(in_thread(self.executor, model.wait_ready))
            # The outcome is read by whoever waits; this only keeps an unawaited failure quiet.
            load.add_done_callback(lambda task: task.cancelled() or task.exception())
            self._loads[model] = load
        try:
            return await asyncio.wait_for(asyncio.shield(load), timeout)
        except TimeoutError:
            raise ModelNotReadyError(
                f"model '{model.name}' is still loading (waited {timeout:.3g}s)", retry_after=1.0
            ) from None

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest, *, timeout: float | None = None
    ) -> InferenceResponse:
        """Run one inference request through the contract of the model of that name and version."""
        return await self.run(self.get(name, version), request, timeout=timeout)

    async def run(self, model: Model, request: InferenceRequest, *, timeout: float | None = None) -> InferenceResponse:
        """Run one inference request through ``model``'s contract (a model found by :meth:`get`).

        ``timeout`` is what the client allows (a gRPC deadline, Lambda's remaining time); the
        request's deadline is the earliest of it, the server's and the model's run timeout.
        Past the deadline the request fails with :class:`DeadlineExceededError`; an async
        predict is cancelled then, a sync one runs on in its thread, holding its slot.
        """
        if model.streaming:
            return await self._collect(model, request, timeout)
        hooks = self._hooks[model]
        hooks.enter(1)
        trace = tracing.current() if tracing.active else None
        try:
            batcher = self._batchers.get(model)
            on_loop = batcher is None and not model.is_async and not model.run_in_thread
            # Called on the loop at once, where nothing waits or interrupts it: no deadline to reckon.
            predict = model.loaded() if on_loop else None
            if predict is None:
                deadline, predict = await self._ready(model, timeout)
            arrays = model.bind_inputs(request.inputs)
            names = _requested_names(model, request)
            if batcher is not None:
                if trace is None:
                    outputs = await batcher.submit(arrays, deadline)
                else:
                    outputs = await _traced_batch(batcher, arrays, deadline, trace)
            elif not on_loop:
                call = await self._slot(model, deadline, trace)
                outputs = await self._predict(model, predict, arrays, call, deadline, None, trace)
            else:
                # On the loop: nothing else runs meanwhile, so no slot or queue could be contended.
                hooks.waited(0.0)
                began = time.perf_counter()
                if trace is not None:
                    trace.child("queue", began, began)
                try:
                    result = call_sync(model, predict, arrays)
                finally:
                    ended = time.perf_counter()
                    hooks.predicted(ended - began, 1)
                    if trace is not None:
                        trace.child("predict", began, ended)
                outputs = model.check_outputs(result)
            return _response(model, request, outputs, names)
        finally:
            hooks.leave(1)

    async def responses(
        self, model: Model, request: InferenceRequest, *, timeout: float | None = None
    ) -> AsyncGenerator[InferenceResponse, None]:
        """The responses of one request of ``model``: each yield of a streaming predict, or the one response.

        The stream holds one of the model's predict slots from its first step until the
        generator has stopped, under the request's deadline (:meth:`run` says which). Close it
        (``contextlib.aclosing``) when the client goes away: the generator is closed then, its
        ``finally`` blocks run, and its slot is freed.
        """
        if not model.streaming:
            yield await self.run(model, request, timeout=timeout)
            return
        from omi_adapters.streaming import open_source

        hooks = self._hooks[model]
        hooks.enter(1)
        began = time.perf_counter()
        try:
            deadline, predict = await self._ready(model, timeout)
            arrays = model.bind_inputs(request.inputs)
            names = _requested_names(model, request)
            call = await self._slot(model, deadline)
            source = open_source(model, predict, arrays, self._gates[model], call, deadline)
            try:
                count = 0
                while True:
                    if count & _YIELD_EVERY == 1:
                        # A generator that never waits would hold the loop for its whole stream:
                        # let the loop turn after the first response (so that it goes out at once)
                        # and every few after it (other requests, and the writes, go on).
                        await asyncio.sleep(0)
                    try:
                        item = await source.next()
                    except StopAsyncIteration:
                        return
                    count += 1
                    yield _response(model, request, model.check_outputs(item), names)
            finally:
                await source.aclose()
                hooks.predicted(time.perf_counter() - began, 1)
        finally:
            hooks.leave(1)

    async def _collect(self, model: Model, request: InferenceRequest, timeout: float | None) -> InferenceResponse:
        """A streaming model's yields as one response (:func:`omi_adapters.streaming.collect`)."""
        from omi_adapters.streaming import check_collected, collect, collected_bytes

        parts: list[InferenceResponse] = []
        held = 0
        stream = self.responses(model, request, timeout=timeout)
        try:
            async for response in stream:
                parts.append(response)
                held += collected_bytes(response)
                check_collected(model, held, self.limits.max_inflight_bytes)
        finally:
            await stream.aclose()
        return collect(model, parts, request.id)

    async def _slot(self, model: Model, deadline: Deadline, trace: tracing.Request | None = None) -> int:
        """Take one of ``model``'s predict slots for a request with ``deadline`` (waiting in its queue).

        The wait is reported to the model's hooks and, when the request is traced, as its ``queue`` span.
        """
        gate = self._gates[model]
        hooks = self._hooks[model]
        if gate.free:
            call = gate.take(deadline)
            hooks.waited(0.0)
            if trace is not None:
                now = time.perf_counter()
                trace.child("queue", now, now)
            return call
        hooks.queue(1)
        began = time.perf_counter()
        try:
            call = await gate.acquire(deadline)
        finally:
            hooks.dequeue(1)
        acquired = time.perf_counter()
        hooks.waited(acquired - began)
        if trace is not None:
            trace.child("queue", began, acquired)
        return call

    async def run_items(
        self, model: Model, requests: list[InferenceRequest], *, timeout: float | None = None
    ) -> list[InferenceResponse | OmiError]:
        """Run several requests of ``model`` that arrive together (an OMI Run's items).

        A batching model's batcher gets them all at once, so they merge into as few predict
        calls as its ``max_batch_size`` allows; any other model runs them one after another,
        each with a deadline of its own. Each request fails alone.
        """
        batcher = self._batchers.get(model)
        if batcher is None:
            # The client's deadline covers them all; each also has its own run timeout.
            ends = None if timeout is None else time.monotonic() + timeout
            outcomes: list[InferenceResponse | OmiError] = []
            for request in requests:
                left = None if ends is None else ends - time.monotonic()
                outcomes.append(await _outcome(self.run(model, request, timeout=left)))
            return outcomes
        hooks = self._hooks[model]
        hooks.enter(len(requests))
        try:
            return await self._run_batched_items(model, batcher, requests, timeout)
        finally:
            hooks.leave(len(requests))

    async def _run_batched_items(
        self, model: Model, batcher: Batcher, requests: list[InferenceRequest], timeout: float | None
    ) -> list[InferenceResponse | OmiError]:
        deadline, _ = await self._ready(model, timeout)
        results: list[InferenceResponse | OmiError | None] = [None] * len(requests)
        bound: list[tuple[int, dict[str, Any], set[str] | None]] = []
        for index, request in enumerate(requests):
            try:
                bound.append((index, model.bind_inputs(request.inputs), _requested_names(model, request)))
            except OmiError as exc:
                results[index] = exc
        answers = await batcher.submit_many([arrays for _, arrays, _ in bound], deadline)
        for (index, _, names), answer in zip(bound, answers):
            if isinstance(answer, OmiError):
                results[index] = answer
            elif isinstance(answer, BaseException):
                raise answer
            else:
                results[index] = _response(model, requests[index], answer, names)
        return [r if r is not None else PredictError("no result") for r in results]

    async def _ready(self, model: Model, timeout: float | None) -> tuple[Deadline, Any]:
        """The deadline of a request arriving now, and the model's predict once it is loaded."""
        deadline = self.deadline(model, timeout)
        predict = model.loaded()
        if predict is not None:
            return deadline, predict
        return deadline, await self.wait_ready(model, max(0.0, deadline.remaining()))

    async def _predict(
        self,
        model: Model,
        predict: Any,
        arrays: dict[str, Any],
        call: int,
        deadline: Deadline,
        batch: int | None,
        trace: tracing.Request | None = None,
    ) -> dict[str, Any]:
        """Run predict holding slot ``call`` of the model's gate until ``deadline``; the checked outputs.

        Past the deadline the request fails with :class:`DeadlineExceededError`; an async predict
        is cancelled then, a sync one runs on in its thread, holding its slot until it returns.
        """
        gate = self._gates[model]
        began = time.perf_counter()
        try:
            result = await self._call(model, gate, predict, arrays, call, deadline)
        finally:
            ended = time.perf_counter()
            self._hooks[model].predicted(ended - began, 1 if batch is None else batch)
            if trace is not None:
                trace.child("predict", began, ended)
        return model.check_outputs(result, batch)

    async def _call(
        self, model: Model, gate: ModelGate, predict: Any, arrays: dict[str, Any], call: int, deadline: Deadline
    ) -> Any:
        if model.is_async:
            try:
                async with asyncio.timeout(deadline.remaining()):
                    result = await call_async(model, predict, arrays)
            except TimeoutError:
                raise deadline.exceeded(model.name) from None
            finally:
                gate.release(call)
        elif model.run_in_thread:
            result = await gate.in_thread(call, deadline, call_sync, model, predict, arrays)
        else:
            try:
                result = call_sync(model, predict, arrays)
            finally:
                gate.release(call)
        return result

    async def _run_batch(self, model: Model, arrays: dict[str, Any], rows: int, call: int, deadline: Deadline) -> Any:
        return await self._predict(model, model.wait_ready(0), arrays, call, deadline, rows)


def _response(
    model: Model, request: InferenceRequest, outputs: dict[str, Any], names: set[str] | None
) -> InferenceResponse:
    # Positional arguments, in the fields' order (omi_adapters.types).
    tensors = [
        OutputTensor(spec.name, spec.datatype, (data := outputs[spec.name]).shape, data)
        for spec in model.outputs
        if names is None or spec.name in names
    ]
    if request.outputs is not None and any(classification.PARAMETER in o.parameters for o in request.outputs):
        tensors = _classified(model, request, tensors)
    return InferenceResponse(model.name, model.version, tensors, request.id)


async def _traced_batch(batcher: Batcher, arrays: dict[str, Any], deadline: Deadline, trace: tracing.Request) -> Any:
    """``batcher.submit``, recording the request's wait for its batch and the batch's predict as spans."""
    began = time.perf_counter()
    marks: list[float] = []
    try:
        return await batcher.submit(arrays, deadline, marks)
    finally:
        ended = time.perf_counter()
        if marks:
            start, rows = marks
            trace.child("queue", began, start)
            trace.child("predict", start, ended, {"omi.batch_rows": int(rows)})
        else:
            trace.child("queue", began, ended)


def _classified(model: Model, request: InferenceRequest, tensors: list[OutputTensor]) -> list[OutputTensor]:
    """The outputs asked for with ``classification: k`` as their top ``k`` classes (Triton's classification extension)."""
    counts = {
        o.name: o.parameters[classification.PARAMETER]
        for o in request.outputs or ()
        if classification.PARAMETER in o.parameters
    }
    specs = {spec.name: spec for spec in model.outputs}
    answered = []
    for tensor in tensors:
        k = counts.get(tensor.name)
        if k is not None:
            data = classification.classify(
                tensor.data, int(k), batched=model.max_batch_size > 0, labels=specs[tensor.name].labels
            )
            tensor = OutputTensor(name=tensor.name, datatype="BYTES", shape=data.shape, data=data)
        answered.append(tensor)
    return answered


async def _outcome(run: Awaitable[InferenceResponse]) -> InferenceResponse | OmiError:
    try:
        return await run
    except OmiError as exc:
        return exc


def _requested_names(model: Model, request: InferenceRequest) -> set[str] | None:
    if not request.outputs:
        return None
    declared = {t.name for t in model.outputs}
    names = set()
    for output in request.outputs:
        if output.name not in declared:
            raise InvalidInputError(
                f"unknown output '{output.name}' requested; model '{model.name}' has: {', '.join(sorted(declared))}"
            )
        if classification.PARAMETER in output.parameters:
            spec = next(t for t in model.outputs if t.name == output.name)
            classification.class_count(output.parameters[classification.PARAMETER], output.name, spec.datatype)
        names.add(output.name)
    return names


def call_sync(model: Model, predict: Any, arrays: dict[str, Any]) -> Any:
    """Call a sync predict; anything it raises, but an :class:`OmiError`, is a logged :class:`PredictError`.

    ``BaseException`` included: a stray ``sys.exit()`` or ``KeyboardInterrupt`` in model code
    fails its request, never the server.
    """
    try:
        return predict(**arrays)
    except OmiError:
        raise
    except BaseException as exc:  # user code: see the docstring
        raise predict_failed(model, exc) from exc


async def call_async(model: Model, predict: Any, arrays: dict[str, Any]) -> Any:
    """Await an async predict, its errors reported as :func:`call_sync` reports them.

    A cancellation that this task was asked for (a deadline, a client that went away, the
    server stopping) goes on; a ``CancelledError`` the predict raised by itself is its failure.
    """
    try:
        return await predict(**arrays)
    except OmiError:
        raise
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise predict_failed(model, exc) from exc
    except BaseException as exc:  # user code
        raise predict_failed(model, exc) from exc


def predict_failed(model: Model, exc: BaseException) -> PredictError:
    """The :class:`PredictError` of a predict that raised ``exc``, which is logged with its traceback."""
    log.error("predict of model %r raised", model.name, exc_info=exc)
    return PredictError.raised(model.name, exc)
