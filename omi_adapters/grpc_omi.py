"""The Open Model Interface front end: the ``ModzyModel`` gRPC service (OMI's ``model.proto``).

``omi serve`` makes a ``grpc.aio`` server on the OMI port and calls :func:`add_to_server`.
What this server does where the two reference servers fall short (chassis and Modzy's OMI examples):

- a ``Run`` before any ``Status`` loads the model instead of hanging or failing every item;
- an exception inside predict fails its item with the reason, never silently;
- items of a batching model go to its dynamic batcher together, which merges them and, when a
  merged call fails, runs them one by one, so a bad item fails alone;
- ``Shutdown`` replies first and then asks the process to stop once, gracefully;
- the declared ``status`` timeout bounds loading; each predict call has the deadline every
  front end gives it (the model's ``run`` timeout, the server's, the client's).

Both reference servers always answer gRPC OK and report errors in ``status_code`` and per-item
``success``; so does this one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import grpc
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"the OMI front end needs gRPC ({exc.name}): pip install 'omi-adapters[grpc]'") from exc

from omi_adapters import tracing
from omi_adapters.codecs.message_size import omi_run_bytes
from omi_adapters.codecs.omi_files import ERROR_FILE, FileCodec
from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane, in_thread
from omi_adapters.errors import ErrorCode, ModelNotReadyError, OmiError
from omi_adapters.grpc_health import NOT_SERVING, SERVING, Health, register
from omi_adapters.metadata import parse_duration
from omi_adapters.protos import modzy_model_pb2 as pb
from omi_adapters.protos import modzy_model_pb2_grpc as pb_grpc
from omi_adapters.types import InferenceRequest, InferenceResponse, InputTensor

__all__ = ["FLAG_INPUTS", "SERVICE_NAME", "ModzyModelServicer", "add_to_server"]

SERVICE_NAME = "ModzyModel"
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger("omi_adapters.omi")

#: The one error table of this protocol: ErrorCode -> (status_code, status) of a reply that
#: fails as a whole. OMI defines only 200 and 500 for Status; a model that cannot load
#: (UNAVAILABLE) is therefore 500, the others keep their HTTP meaning.
STATUS_OF: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.INVALID_ARGUMENT: (400, "Bad Request"),
    ErrorCode.UNAUTHENTICATED: (401, "Unauthorized"),
    ErrorCode.OVERLOADED: (503, "Service Unavailable"),
    ErrorCode.RESOURCE_EXHAUSTED: (413, "Payload Too Large"),
    ErrorCode.NOT_FOUND: (404, "Not Found"),
    ErrorCode.UNAVAILABLE: (500, "Internal Server Error"),
    ErrorCode.INTERNAL: (500, "Internal Server Error"),
    ErrorCode.DEADLINE_EXCEEDED: (504, "Gateway Timeout"),
}

#: RunRequest flags, and the features field that declares the model supports each (``ModelFeatures``).
#: A model receives a flag through an input of that name with datatype BOOL, if it declares one.
FLAG_INPUTS = {"detect_drift": "drift_format", "explain": "explanation_format"}

Item = tuple[int, dict[str, np.ndarray[Any, Any]]]
_DECODE_ON_LOOP_BYTES = 256 * 1024  # larger Run requests are decoded in a worker thread


class ModzyModelServicer(pb_grpc.ModzyModelServicer):
    """Serves one model of a :class:`DataPlane` as ``ModzyModel``."""

    def __init__(self, dataplane: DataPlane, model: Model, shutdown: Callable[[], None]) -> None:
        self._dataplane = dataplane
        self._model = model
        self._shutdown = shutdown
        self._shutting_down = False
        self._announced = False  # whether a Status has reported the model initialized
        self._batched = model.max_batch_size > 0
        # Flag inputs are filled from the RunRequest, one value per item, never from a file.
        self._flags = {
            s.name: tuple(1 if d == -1 else d for d in (s.shape[1:] if self._batched else s.shape))
            for s in model.inputs
            if s.name in FLAG_INPUTS and s.datatype == "BOOL"
        }
        files = [s for s in model.inputs if s.name not in self._flags]
        self._datatypes = {s.name: s.datatype for s in model.inputs}
        self._codec = FileCodec(files, model.outputs, batched=self._batched)
        self._status_timeout = parse_duration(model.metadata.timeouts.status, "timeouts.status")
        self._metadata = _metadata(model, self._codec)

    # --- Status ----------------------------------------------------------------------------

    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.StatusResponse:
        reply = pb.StatusResponse()
        reply.CopyFrom(self._metadata)
        try:
            await self._load()
        except OmiError as exc:
            reply.status_code, reply.status = STATUS_OF[exc.code]
            reply.message = f"Model Failed to Initialize: {exc}"
            return reply
        reply.status_code, reply.status = 200, "OK"
        reply.message = "Model Already Initialized." if self._announced else "Model Initialized Successfully."
        self._announced = True
        return reply

    async def _load(self) -> None:
        """Load (or wait for) the model within the declared status timeout.

        Every caller waits on the DataPlane's one shared load, so clients polling Status while a
        slow model loads (as chassis' OMIClient does every 0.5 s) do not each hold a thread.
        """
        if self._model.ready:
            return
        try:
            await self._dataplane.wait_ready(self._model, self._status_timeout)
        except ModelNotReadyError as exc:
            if self._model.load_error is not None:
                raise
            raise ModelNotReadyError(
                f"model '{self._model.name}' did not finish loading within its status timeout "
                f"({self._model.metadata.timeouts.status})"
            ) from exc

    # --- Run -------------------------------------------------------------------------------

    async def Run(self, request: pb.RunRequest, context: Context) -> pb.RunResponse:
        if tracing.active:
            return await self._traced_run(request, context)
        return await self._answer_run(request, context)

    async def _traced_run(self, request: pb.RunRequest, context: Context) -> pb.RunResponse:
        """:meth:`Run` under a server span (the items' queue and predict spans are its children)."""
        trace = tracing.start_rpc("omi", SERVICE_NAME, "Run", context.invocation_metadata())
        trace.span.set_attribute("omi.items", len(request.inputs))
        try:
            reply = await self._answer_run(request, context)
        finally:
            if not trace.ended:
                trace.finish(self._model, None, "CANCELLED", None, time.perf_counter())
        return reply

    async def _answer_run(self, request: pb.RunRequest, context: Context) -> pb.RunResponse:
        began = time.perf_counter()
        results: list[pb.OutputItem | None] = [None] * len(request.inputs)
        codes: list[ErrorCode | None] = [None] * len(request.inputs)
        notes = self._flag_notes(request)
        try:
            ticket = self._dataplane.admit(omi_run_bytes(request))
        except OmiError as exc:
            reply = _run_response([_failure(str(exc))] * len(results), notes)
            codes = [exc.code] * len(results)
        else:
            with ticket:
                reply = await self._run(request, results, codes, notes, context.time_remaining())
        seconds = time.perf_counter() - began
        self._observe(request, reply, codes, seconds)
        trace = tracing.current() if tracing.active else None
        if trace is not None:
            failed = sum(not o.success for o in reply.outputs)
            error = next((c for c in codes if c is not None), None) if failed else None
            trace.finish(self._model, None, f"{failed} of {len(reply.outputs)} items failed" if failed else "success",
                         error, began + seconds)  # fmt: skip
        access = self._dataplane.access_log
        if access is not None:
            failed = sum(not o.success for o in reply.outputs)
            status = f"{reply.status_code} ({failed} of {len(reply.outputs)} items failed)" if failed else "200"
            access("omi", "Run", self._model.name, self._model.version, status, seconds,
                   omi_run_bytes(request), omi_run_bytes(reply), None, context.peer())  # fmt: skip
        return reply

    def _observe(
        self, request: pb.RunRequest, reply: pb.RunResponse, codes: list[ErrorCode | None], seconds: float
    ) -> None:
        """Each item is one request of the metrics, answered when the Run is."""
        observe = self._dataplane.observer.request
        for item, output, code in zip(request.inputs, reply.outputs, codes):
            size = sum(len(data) for data in item.input.values())
            sent = sum(len(data) for data in output.output.values())
            if output.success:
                observe("omi", self._model, "success", None, seconds, size, sent)
            else:
                observe("omi", self._model, "failure", code or ErrorCode.INTERNAL, seconds, size, sent)

    async def _run(
        self,
        request: pb.RunRequest,
        results: list[pb.OutputItem | None],
        codes: list[ErrorCode | None],
        notes: list[str],
        timeout: float | None,
    ) -> pb.RunResponse:
        try:
            await self._load()
        except OmiError as exc:
            failed = _failure(f"Failed to process model input: {exc}")
            codes[:] = [exc.code] * len(results)
            return _run_response([failed] * len(results), notes)
        size = sum(len(data) for item in request.inputs for data in item.input.values())
        trace = tracing.current() if tracing.active else None
        if trace is not None:
            decoding = time.perf_counter()
        if size > _DECODE_ON_LOOP_BYTES:
            # Parsing megabytes of JSON would stall every other call on the loop: use a thread.
            items = await in_thread(self._dataplane.executor, self._decode, request, results, codes)
        else:
            items = self._decode(request, results, codes)
        # A batching model gets the items together, and its batcher merges them; any other runs
        # them one after another, so that each item's run timeout bounds its own predict call
        # (OMI's per-item inference deadline), not its wait behind this Run's others.
        if trace is not None:
            trace.child("decode", decoding, time.perf_counter())
        responses = await self._dataplane.run_items(self._model, [self._request(a) for _, a in items], timeout=timeout)
        if trace is not None:
            encoding = time.perf_counter()
        for (index, _), response in zip(items, responses):
            results[index] = self._item(index, response, codes)
        if trace is not None:
            trace.child("encode", encoding, time.perf_counter())
        return _run_response(results, notes)

    def _request(self, arrays: dict[str, np.ndarray[Any, Any]]) -> InferenceRequest:
        """One item as a request: a batch of one sample when the model batches."""
        tensors = []
        for name, array in arrays.items():
            data = array[np.newaxis, ...] if self._batched else array
            tensors.append(InputTensor(name=name, datatype=self._datatypes[name], shape=data.shape, data=data))
        return InferenceRequest(inputs=tensors)

    def _item(self, index: int, response: InferenceResponse | OmiError, codes: list[ErrorCode | None]) -> pb.OutputItem:
        if isinstance(response, OmiError):
            codes[index] = response.code
            return _failure(str(response))
        item = {o.name: (o.data[0, ...] if self._batched else o.data) for o in response.outputs}
        try:
            return pb.OutputItem(output=self._codec.encode_item(item), success=True)
        except OmiError as exc:
            codes[index] = exc.code
            return _failure(str(exc))
        except Exception as exc:  # a codec bug fails its item, with the reason, not the call
            log.exception("encoding OMI item %d of model %r failed", index, self._model.name)
            return _failure(f"internal error: {type(exc).__name__}: {exc}")

    def _decode(
        self, request: pb.RunRequest, results: list[pb.OutputItem | None], codes: list[ErrorCode | None]
    ) -> list[Item]:
        """Decode every item; a bad one gets its failure in ``results`` (its code in ``codes``) and is left out."""
        flags = {name: getattr(request, name) for name in self._flags}
        items: list[Item] = []
        for index, item in enumerate(request.inputs):
            try:
                arrays = self._codec.decode_item(item.input)
            except OmiError as exc:
                results[index] = _failure(str(exc))
                codes[index] = exc.code
                continue
            except Exception as exc:  # a codec bug fails its item, with the reason, not the call
                log.exception("decoding OMI item %d for model %r failed", index, self._model.name)
                results[index] = _failure(f"internal error: {type(exc).__name__}: {exc}")
                continue
            for name, value in flags.items():
                arrays[name] = np.full(self._flags[name], value)
            items.append((index, arrays))
        return items

    def _flag_notes(self, request: pb.RunRequest) -> list[str]:
        """Say plainly when a flag was asked for that the model cannot honour."""
        notes = []
        features = self._model.metadata.features
        for flag, field in FLAG_INPUTS.items():
            if not getattr(request, flag):
                continue
            if not getattr(features, field):
                notes.append(f"{flag} was asked for, but model '{self._model.name}' does not support it "
                             f"(features.{field} is empty)")  # fmt: skip
            elif flag not in self._flags:
                notes.append(f"{flag} was asked for; model '{self._model.name}' has no BOOL input '{flag}' "
                             "to receive it, so its outputs are as always")  # fmt: skip
        return notes

    # --- Shutdown --------------------------------------------------------------------------

    async def Shutdown(self, request: pb.ShutdownRequest, context: Context) -> pb.ShutdownResponse:
        if not self._shutting_down:
            self._shutting_down = True
            # Reply first: stop only once this reply has gone out (chassis kills itself twice).
            context.add_done_callback(self._stop)  # type: ignore[arg-type] # types-grpcio wants a class
        return pb.ShutdownResponse(status_code=200, status="OK", message="Model Shutdown Successfully.")

    def _stop(self, _: object = None) -> None:
        log.info("OMI Shutdown: stopping the server")
        try:
            self._shutdown()
        except Exception:
            log.exception("the shutdown callback raised")


def _failure(message: str) -> pb.OutputItem:
    return pb.OutputItem(output={ERROR_FILE: message.encode("utf-8", "replace")}, success=False)


def _run_response(results: list[pb.OutputItem | None], notes: list[str]) -> pb.RunResponse:
    # Per-item failures leave the call itself 200 "OK" (as chassis answers a failed item).
    message = " ".join(["Inference executed.", *(f"Note: {n}." for n in notes)]) if notes else "Inference executed"
    outputs = [r if r is not None else _failure("internal error: no result") for r in results]
    return pb.RunResponse(status_code=200, status="OK", message=message, outputs=outputs)


def _metadata(model: Model, codec: FileCodec) -> pb.StatusResponse:
    """Fields 4-10 of every Status reply, built once from the decorator's data (OMI's ``StatusResponse``)."""
    meta = model.metadata
    return pb.StatusResponse(
        model_info=pb.ModelInfo(
            model_name=model.name, model_version=model.version, model_author=meta.author,
            model_type=meta.model_type, source=meta.source,
        ),
        description=pb.ModelDescription(
            summary=meta.description.summary, details=meta.description.details,
            technical=meta.description.technical, performance=meta.description.performance,
        ),
        inputs=[
            pb.ModelInput(filename=name, accepted_media_types=f.media_types, max_size=f.max_size,
                          description=f.spec.description)
            for name, f in codec.inputs.items()
        ],
        outputs=[
            pb.ModelOutput(filename=f.spec.name, media_type=f.media_type, max_size=f.max_size,
                           description=f.spec.description)
            for f in codec.outputs
        ],
        resources=pb.ModelResources(
            required_ram=meta.resources.required_ram, num_cpus=meta.resources.num_cpus,
            num_gpus=meta.resources.num_gpus,
        ),
        timeout=pb.ModelTimeout(status=meta.timeouts.status, run=meta.timeouts.run),
        features=pb.ModelFeatures(
            adversarial_defense=meta.features.adversarial_defense, batch_size=max(1, model.max_batch_size),
            retrainable=meta.features.retrainable, results_format=meta.features.results_format,
            drift_format=meta.features.drift_format, explanation_format=meta.features.explanation_format,
        ),
    )  # fmt: skip


def add_to_server(
    server: grpc.aio.Server,
    dataplane: DataPlane,
    *,
    shutdown: Callable[[], None],
    model: str | None = None,
) -> Health:
    """Serve a model of ``dataplane`` as ``ModzyModel`` on ``server``, with health and reflection.

    Health is as chassis serves it: "" is SERVING while the server is up; ``ModzyModel``
    is SERVING once the model is loaded. Returns the health service: call its ``stop_watches()``
    before stopping the server.

    Args:
        server: a ``grpc.aio`` server (not started yet) bound to the OMI port.
        dataplane: the started :class:`DataPlane` of the process.
        shutdown: asks the whole process to stop gracefully; called once, after the
            Shutdown reply has been sent.
        model: the model to serve (OMI serves one model per port); default: the first one.

    Raises:
        ConfigurationError: when the model's OMI declaration cannot be served (named why).
    """
    target = dataplane.get(model) if model else dataplane.models[0]
    if model is None and len(dataplane.models) > 1:
        log.info("OMI serves model %r, the first of %d", target.name, len(dataplane.models))
    servicer = ModzyModelServicer(dataplane, target, shutdown)
    pb_grpc.add_ModzyModelServicer_to_server(servicer, server)  # type: ignore[no-untyped-call] # generated

    def statuses(service: str) -> Any:
        if service == "":
            return SERVING
        if service == SERVICE_NAME:
            return SERVING if target.ready else NOT_SERVING
        return None

    return register(server, SERVICE_NAME, statuses)
