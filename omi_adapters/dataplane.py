"""The transport-neutral dispatcher every front end calls: health, metadata and inference.

Front ends only translate between their wire format and :class:`InferenceRequest` /
:class:`InferenceResponse`; finding the model, waiting for its load, checking inputs,
running predict (sync functions in a thread pool unless the model says otherwise, async
ones on the loop) and checking
outputs happen here, once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from omi_adapters import __version__
from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError, InvalidInputError, ModelNotFoundError, OmiError, PredictError
from omi_adapters.loading import LoadPolicy, LoadState
from omi_adapters.types import InferenceRequest, InferenceResponse, OutputTensor

__all__ = ["EXTENSIONS", "PREDICT_THREAD_PREFIX", "SERVER_NAME", "DataPlane", "call_async", "call_sync", "in_thread"]

SERVER_NAME = "omi-adapters"
#: The names of the threads that run sync predict functions (and loads) start with this.
PREDICT_THREAD_PREFIX = "omi-predict"
#: Reported by server metadata: the Triton conventions this server follows (interfaces.md §2.11).
EXTENSIONS = ("binary_tensor_data",)

log = logging.getLogger("omi_adapters")
T = TypeVar("T")


class DataPlane:
    """The models of one server process, and the requests they serve."""

    def __init__(self, models: Iterable[Model], *, executor: concurrent.futures.Executor | None = None) -> None:
        self._models: dict[str, dict[str, Model]] = {}
        for model in models:
            versions = self._models.setdefault(model.name, {})
            if model.version in versions:
                raise ConfigurationError(f"model '{model.name}' version {model.version} is given twice")
            versions[model.version] = model
        if not self._models:
            raise ConfigurationError("no models to serve")
        #: Runs sync predict functions and loads; threads start on first use.
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(thread_name_prefix=PREDICT_THREAD_PREFIX)

    @property
    def models(self) -> list[Model]:
        """Every served model (all versions), in the order given."""
        return [m for versions in self._models.values() for m in versions.values()]

    def start(self) -> None:
        """Start every model's load as its policy says (eager models load here)."""
        for model in self.models:
            model.start()

    def live(self) -> bool:
        """The server answers requests."""
        return True

    def ready(self) -> bool:
        """Every model can take requests now (see :meth:`model_ready`)."""
        return all(self.model_ready(m) for m in self.models)

    @staticmethod
    def model_ready(model: Model) -> bool:
        """The model is loaded and can serve now.

        A lazy model that nobody has asked for yet starts loading in the background when
        readiness is asked: the honest answer is "not yet", and a probe that waits for
        readiness (Knative, KServe, Kubernetes) must not wait forever for a request that the
        platform will only send once the model is ready.
        """
        if model.ready:
            return True
        if model.load_policy is LoadPolicy.LAZY and model.state is LoadState.UNLOADED:
            model.load_in_background()
        return False

    def get(self, name: str, version: str | None = None) -> Model:
        """The model of that name (and version; the newest when none is given)."""
        versions = self._models.get(name)
        if versions is None:
            raise ModelNotFoundError(f"unknown model '{name}'")
        if not version:
            return next(reversed(versions.values()))
        model = versions.get(version)
        if model is None:
            raise ModelNotFoundError(f"model '{name}' has no version '{version}' (versions: {', '.join(versions)})")
        return model

    def server_metadata(self) -> dict[str, Any]:
        """``$metadata_server_response``."""
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """``$metadata_model_response`` (interfaces.md §2.3)."""
        model = self.get(name, version)
        return {
            "name": model.name,
            "versions": list(self._models[model.name]),
            "platform": "python",
            "inputs": [t.to_dict() for t in model.inputs],
            "outputs": [t.to_dict() for t in model.outputs],
        }

    def model_index(self) -> list[dict[str, Any]]:
        """Every model with its version and state, as a repository index lists them."""
        index = []
        for model in self.models:
            entry: dict[str, Any] = {"name": model.name, "version": model.version, "state": model.state.value}
            if model.load_error is not None:
                entry["reason"] = str(model.load_error)
            index.append(entry)
        return index

    async def wait_ready(self, model: Model) -> Any:
        """Return the model's predict function, loading it off the loop if it must load."""
        if model.ready:
            return model.wait_ready(0)
        return await in_thread(self.executor, model.wait_ready)

    async def infer(self, name: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        """Run one inference request through the contract of the model of that name and version."""
        return await self.run(self.get(name, version), request)

    async def run(self, model: Model, request: InferenceRequest) -> InferenceResponse:
        """Run one inference request through ``model``'s contract (a model found by :meth:`get`)."""
        predict = model.wait_ready(0) if model.ready else await self.wait_ready(model)
        arrays = model.bind_inputs(request.inputs)
        names = _requested_names(model, request)
        batch = request.inputs[0].shape[0] if model.max_batch_size and request.inputs else None
        if model.is_async:
            result = await call_async(model, predict, arrays)
        elif model.run_in_thread:
            result = await in_thread(self.executor, call_sync, model, predict, arrays)
        else:
            result = call_sync(model, predict, arrays)
        outputs = model.check_outputs(result, batch)
        tensors = [
            OutputTensor(
                name=spec.name, datatype=spec.datatype, shape=outputs[spec.name].shape, data=outputs[spec.name]
            )
            for spec in model.outputs
            if names is None or spec.name in names
        ]
        return InferenceResponse(model_name=model.name, model_version=model.version, outputs=tensors, id=request.id)


async def in_thread(executor: concurrent.futures.Executor, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in ``executor`` and await its result (or exception) on this loop.

    ``loop.run_in_executor`` chains a concurrent future to an asyncio one, which costs about
    as much again as the thread hand-off itself; on the hot path the worker instead hands its
    outcome straight back with one ``call_soon_threadsafe``.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            outcome: tuple[Callable[..., None], Any] = (_set_result, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting coroutine
            outcome = (_set_exception, exc)
        try:
            loop.call_soon_threadsafe(outcome[0], future, outcome[1])
        except RuntimeError:
            pass  # the loop has closed: nobody is waiting for this result any more

    executor.submit(work)
    return await future


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # the waiter may have been cancelled (a client that went away)
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


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
        names.add(output.name)
    return names


def call_sync(model: Model, predict: Any, arrays: dict[str, Any]) -> Any:
    """Call a sync predict; anything it raises, but an :class:`OmiError`, is a logged :class:`PredictError`."""
    try:
        return predict(**arrays)
    except OmiError:
        raise
    except Exception as exc:
        raise _predict_failed(model, exc) from exc


async def call_async(model: Model, predict: Any, arrays: dict[str, Any]) -> Any:
    """Await an async predict, its errors reported as :func:`call_sync` reports them."""
    try:
        return await predict(**arrays)
    except OmiError:
        raise
    except Exception as exc:
        raise _predict_failed(model, exc) from exc


def _predict_failed(model: Model, exc: Exception) -> PredictError:
    log.exception("predict of model %r raised", model.name)
    return PredictError.raised(model.name, exc)
