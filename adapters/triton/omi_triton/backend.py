"""``TritonPythonModel``: serves an omi-adapters model from Triton's Python backend.

The contract is the Python backend's (Triton's python_backend README, "Usage"): ``initialize(args)`` once per model
instance, ``execute(requests)`` answering one response per request, ``finalize()``. Requests
go through the same core as every other front end: :meth:`Model.bind_inputs` checks them,
:meth:`Model.check_outputs` checks the results, and each failure is answered by a
``TritonError`` for that request alone (:mod:`omi_triton.errors`), the others still succeed.

A streaming model (a generator predict) is a decoupled model (Triton's "Decoupled Models"):
``omi build triton`` writes ``model_transaction_policy { decoupled: true }``, and each yield,
checked like a result, is sent through the request's response sender as soon as it is made;
the request ends with an empty response flagged ``TRITONSERVER_RESPONSE_COMPLETE_FINAL`` (or
with its error, flagged final). A request that its client cancelled stops its generator at the
next yield, which closes it (its ``finally`` blocks run).

When the model batches (``max_batch_size`` > 0), the requests Triton's dynamic batcher hands to
one ``execute`` are merged along the batch dimension into one predict call and the results split
back, with the same :mod:`omi_adapters.batching` functions that batch every other front end's
requests. If a merged call fails, each request is run on its own, so one bad request cannot
fail its neighbours.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omi_adapters.batching import groups, merge, split
from omi_adapters.codecs.tensors import bf16_to_float32, float32_to_bf16
from omi_adapters.contract import Model
from omi_adapters.dataplane import call_async, call_sync, predict_failed
from omi_adapters.errors import ConfigurationError, OmiError, PredictError
from omi_adapters.targets import load_target
from omi_adapters.types import InputTensor
from omi_triton.config import TARGET_PARAMETER, triton_dims, version_target
from omi_triton.dlpack import bf16_bits, bf16_tensor
from omi_triton.errors import triton_error

__all__ = ["TritonPythonModel"]

log = logging.getLogger("omi_triton")
Arrays = dict[str, np.ndarray[Any, Any]]


class TritonPythonModel:
    """The Python-backend model class; ``model.py`` of each built version re-exports it."""

    model: Model | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def initialize(self, args: dict[str, str]) -> None:
        """Find the model named by ``config.pbtxt`` and load it as its policy says."""
        import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # Triton provides it

        self._pb = pb_utils
        _check_numpy_interop(pb_utils)
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        # A model of several versions names each one's code; one version, the model's.
        chosen = parameters.get(version_target(args["model_version"])) or parameters.get(TARGET_PARAMETER, {})
        target = chosen.get("string_value")
        if not target:
            raise ConfigurationError(
                f"config.pbtxt of '{config.get('name')}' has no '{TARGET_PARAMETER}' parameter; "
                "write the repository with `omi build triton`"
            )
        version_dir = Path(args["model_repository"]) / args["model_version"]
        model = _load(target, version_dir, config["name"])
        _check_contract(model, config)
        self.model = model
        self._datatypes = {t.name: t.datatype for t in model.inputs}
        self._loop = asyncio.new_event_loop() if model.is_async else None
        model.start()  # eager: loads here, once per instance; lazy: on the first execute
        if model.load_error is not None:
            # Raises the core's ModelLoadError naming the cause; Triton then reports the model
            # unavailable with that reason.
            model.wait_ready(0)

    def execute(self, requests: Sequence[Any]) -> list[Any] | None:
        """Answer every request, in order; a failed one gets its own ``TritonError``.

        A streaming model answers through each request's response sender and returns None, as
        a decoupled model must.
        """
        model = self.model
        assert model is not None, "execute before initialize"
        if model.streaming:
            for request in requests:
                self._stream(request)
            return None
        responses: list[Any] = [None] * len(requests)
        bound: list[tuple[int, Arrays]] = []
        predict: Callable[..., Any] = _unloaded
        for index, request in enumerate(requests):
            try:
                bound.append((index, model.bind_inputs(self._decode(request))))
            except Exception as exc:  # noqa: BLE001 - every failure becomes this request's error
                responses[index] = self._failure(exc)
        if bound:
            try:
                predict = model.wait_ready()  # lazy models load on the first request
            except Exception as exc:  # noqa: BLE001
                for index, _ in bound:
                    responses[index] = self._failure(exc)
                bound = []
        for group in _groups(model, bound):  # requests that merge, each group one predict call
            for index, outcome in zip([i for i, _ in group], self._run(predict, [a for _, a in group])):
                responses[index] = (
                    self._failure(outcome) if isinstance(outcome, BaseException) else self._encode(outcome)
                )
        return responses

    def finalize(self) -> None:
        """Release the model (and the event loop of an async one)."""
        self.model = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    # --- streaming -------------------------------------------------------------------------

    def _stream(self, request: Any) -> None:
        """Send each yield of predict for ``request`` as its own response, then the final flag."""
        model = self.model
        assert model is not None
        pb_utils = self._pb
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        sender = request.get_response_sender()
        cancelled = getattr(request, "is_cancelled", None)  # Triton 23.10 and newer
        items: Any = None
        try:
            arrays = model.bind_inputs(self._decode(request))
            predict = model.wait_ready()
            items = self._items(predict, arrays)
            for item in items:
                if cancelled is not None and cancelled():
                    break  # the client went away: the finally below closes the generator
                sender.send(self._encode(model.check_outputs(item)))
            sender.send(flags=final)
        except Exception as exc:  # noqa: BLE001 - the request's error, sent as its last response
            sender.send(self._failure(exc), flags=final)
        finally:
            if items is not None:
                items.close()

    def _items(self, predict: Callable[..., Any], arrays: Arrays) -> Any:
        """The yields of a streaming predict as one sync generator (an async one stepped on this loop)."""
        model = self.model
        assert model is not None
        try:
            made = predict(**arrays)
        except OmiError:
            raise
        except BaseException as exc:  # user code
            raise predict_failed(model, exc) from exc
        if self._loop is not None and hasattr(made, "__anext__"):
            return _stepped(model, made, self._loop)
        return _checked(model, made)

    # --- predict ---------------------------------------------------------------------------

    def _run(self, predict: Callable[..., Any], batch: list[Arrays]) -> list[Arrays | BaseException]:
        """Outputs (or the error) of each request of ``batch``: one call when they merge."""
        if len(batch) > 1:
            try:
                return self._merged(predict, batch)
            except Exception:  # noqa: BLE001 - fall back to one call per request below
                log.info("merged predict of %d requests failed; running them one by one", len(batch))
        outcomes: list[Arrays | BaseException] = []
        for arrays in batch:
            try:
                outcomes.append(self._call(predict, arrays, _batch_size(self.model, arrays)))
            except Exception as exc:  # noqa: BLE001
                outcomes.append(exc)
        return outcomes

    def _merged(self, predict: Callable[..., Any], batch: list[Arrays]) -> list[Arrays | BaseException]:
        merged, sizes = merge(batch)
        return list(split(self._call(predict, merged, sum(sizes)), sizes))

    def _call(self, predict: Callable[..., Any], arrays: Arrays, batch: int | None) -> Arrays:
        model = self.model
        assert model is not None
        if self._loop is None:
            result = call_sync(model, predict, arrays)
        else:
            result = self._loop.run_until_complete(call_async(model, predict, arrays))
        return model.check_outputs(result, batch)

    # --- tensors ---------------------------------------------------------------------------

    def _decode(self, request: Any) -> list[InputTensor]:
        tensors = []
        for tensor in request.inputs():
            name = tensor.name()
            datatype = self._datatypes.get(name, "")
            if datatype == "BF16":
                data = bf16_to_float32(bf16_bits(self._pb, tensor))
            else:
                data = tensor.as_numpy()  # BYTES: an object array of bytes
            tensors.append(InputTensor(name=name, datatype=datatype, shape=tuple(data.shape), data=data))
        return tensors

    def _encode(self, outputs: Arrays) -> Any:
        pb_utils = self._pb
        tensors = []
        assert self.model is not None
        for spec in self.model.outputs:
            array = outputs[spec.name]
            if spec.datatype == "BF16":
                tensors.append(bf16_tensor(pb_utils, spec.name, float32_to_bf16(array)))
            else:
                tensors.append(pb_utils.Tensor(spec.name, np.ascontiguousarray(array)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _failure(self, exc: BaseException) -> Any:
        if not isinstance(exc, OmiError):
            exc = PredictError(f"{type(exc).__name__}: {exc}")
        return self._pb.InferenceResponse(output_tensors=[], error=triton_error(self._pb, exc))


def _checked(model: Model, made: Any) -> Iterator[Any]:
    """The items of a sync iterator, its failures reported as the core reports a predict's."""
    if not hasattr(made, "__next__"):
        raise PredictError(
            f"model '{model.name}' streams, so predict must return an iterator, got {type(made).__name__}"
        )
    try:
        while True:
            try:
                item = next(made)
            except StopIteration:
                return
            except OmiError:
                raise
            except BaseException as exc:  # user code
                raise predict_failed(model, exc) from exc
            yield item
    finally:
        close = getattr(made, "close", None)
        if close is not None:
            close()


def _stepped(model: Model, made: Any, loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """The items of an async iterator, each awaited on ``loop``."""
    try:
        while True:
            try:
                item = loop.run_until_complete(made.__anext__())
            except StopAsyncIteration:
                return
            except OmiError:
                raise
            except BaseException as exc:  # user code
                raise predict_failed(model, exc) from exc
            yield item
    finally:
        close = getattr(made, "aclose", None)
        if close is not None:
            loop.run_until_complete(close())


def _unloaded(**_: Any) -> Any:
    raise PredictError("predict called before the model was loaded")


def _groups(model: Model, bound: list[tuple[int, Arrays]]) -> list[list[tuple[int, Arrays]]]:
    """Requests that can share one predict call: with batching, those that merge."""
    if not model.max_batch_size:
        return [[item] for item in bound]
    return groups(bound, model.max_batch_size)


def _batch_size(model: Model | None, arrays: Arrays) -> int | None:
    if model is None or not model.max_batch_size or not arrays:
        return None
    return int(next(iter(arrays.values())).shape[0])


def _load(target: str, version_dir: Path, name: str) -> Model:
    location, _, attr = target.rpartition(":")
    if "/" in location:  # a file copied into the repository, relative to the version folder
        location = str(version_dir / location)
    models = [m for m in load_target(f"{location}:{attr}") if m.name == name]
    if not models:
        raise ConfigurationError(f"{target} defines no model named '{name}'")
    return models[0]


def _check_contract(model: Model, config: dict[str, Any]) -> None:
    """The code and config.pbtxt must declare the same tensors and batching (a stale build otherwise).

    Triton checks requests against config.pbtxt; a stale one would pass requests the model then
    refuses, or refuse those it takes, while the model reports ready.
    """
    batch = int(config.get("max_batch_size", 0))

    def declared(entries: list[dict[str, Any]]) -> set[tuple[str, str, tuple[int, ...]]]:
        # dims are int64, which protobuf's JSON writes as strings.
        return {(e["name"], e["data_type"], tuple(int(d) for d in e.get("dims", ()))) for e in entries}

    def ours(tensors: Sequence[Any]) -> set[tuple[str, str, tuple[int, ...]]]:
        return {
            (
                t.name,
                "TYPE_STRING" if t.datatype == "BYTES" else f"TYPE_{t.datatype}",
                tuple(triton_dims(t.shape, batch > 0)),
            )
            for t in tensors
        }

    # A smaller max_batch_size is a tuning choice; a larger one would hand predict bigger batches.
    batching_agrees = batch == model.max_batch_size == 0 or 0 < batch <= model.max_batch_size
    decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled", False))
    if (
        not batching_agrees
        or decoupled != model.streaming
        or declared(config.get("input", [])) != ours(model.inputs)
        or declared(config.get("output", [])) != ours(model.outputs)
    ):
        raise ConfigurationError(
            f"config.pbtxt of '{model.name}' does not match the model's code; rebuild with `omi build triton`"
        )


def _check_numpy_interop(pb_utils: Any) -> None:
    """Refuse to serve when the stub cannot read this numpy's arrays (it would corrupt data)."""
    probe = np.arange(1, 5, dtype=np.int32)
    copy = pb_utils.Tensor.from_dlpack("probe", pb_utils.Tensor("probe", probe).to_dlpack()).as_numpy()
    if not np.array_equal(copy, probe):
        raise ConfigurationError(
            f"this Triton Python backend reads numpy {np.__version__} arrays wrongly (it saw {copy.tolist()} "
            f"for {probe.tolist()}); install numpy<2 in the model environment"
        )
