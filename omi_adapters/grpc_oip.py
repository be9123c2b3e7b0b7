"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``.

The OIP's gRPC protocol, with Triton's additions (``ModelStreamInfer``, ``ModelStatistics``,
``ModelConfig``, and ``RepositoryIndex``, ``RepositoryModelLoad``, ``RepositoryModelUnload`` of
its model repository extension).

A ``grpc.aio`` servicer that only delegates: messages become transport-neutral requests and
back through :mod:`omi_adapters.codecs.oip_grpc`, and the shared :class:`DataPlane` runs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from omi_adapters import repository, tracing
from omi_adapters.codecs.oip_grpc import decode_request, encode_response, parse_request, serialize_response
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import ErrorCode, OmiError
from omi_adapters.grpc_health import NOT_SERVING, SERVING, Health, register
from omi_adapters.protos import model_config_pb2
from omi_adapters.protos import open_inference_grpc_pb2 as pb
from omi_adapters.protos import open_inference_grpc_pb2_grpc as pb_grpc

__all__ = ["GRPC_STATUS", "SERVICE_NAME", "InferenceServicer", "add_to_server", "decode_request", "encode_response"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger("omi_adapters.grpc")

#: The one table from the error tree to gRPC status codes.
GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}
#: The outcome labels of gRPC requests (metrics): the status code's name.
_CODE_NAME = {code: status.name for code, status in GRPC_STATUS.items()}


# --- the service ---------------------------------------------------------------------------------


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over one :class:`DataPlane`."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.observer = dataplane.observer
        self.access_log = dataplane.access_log

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        # A model (or version) not served is not ready, as Triton answers it: no error.
        try:
            model = self.dataplane.get(request.name, request.version or None)
        except OmiError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self.dataplane.model_ready(model))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        try:
            meta = self.dataplane.model_metadata(request.name, request.version or None)
        except OmiError as exc:
            await _abort(context, exc)
        inputs, outputs = (
            [
                pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                for t in meta[key]
            ]
            for key in ("inputs", "outputs")
        )
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"], inputs=inputs, outputs=outputs
        )

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Context) -> pb.ModelStatisticsResponse:
        observer = self.dataplane.observer
        if getattr(observer, "collect_registry", None) is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "statistics need the metrics (prometheus-client)")
        from omi_adapters.statistics import model_statistics

        try:
            stats = model_statistics(self.dataplane, observer, request.name or None, request.version or None)  # type: ignore[arg-type]
        except OmiError as exc:
            await _abort(context, exc)
        reply = pb.ModelStatisticsResponse()
        for entry in stats:
            reply.model_stats.append(
                pb.ModelStatistics(
                    name=entry["name"],
                    version=entry["version"],
                    last_inference=entry["last_inference"],
                    inference_count=entry["inference_count"],
                    execution_count=entry["execution_count"],
                    inference_stats=pb.InferStatistics(
                        **{k: pb.StatisticDuration(**v) for k, v in entry["inference_stats"].items()}
                    ),
                )
            )
        return reply

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> pb.ModelConfigResponse:
        try:
            config = repository.served_config(self.dataplane, request.name, request.version or None)
        except OmiError as exc:
            await _abort(context, exc)
        from google.protobuf import json_format  # only here: ~15 ms of start for a call few clients make

        return pb.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context) -> pb.RepositoryIndexResponse:
        entries = repository.index(self.dataplane, ready=request.ready)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**e) for e in entries])

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        try:
            await repository.load(self.dataplane, request.model_name, dict(request.parameters))
        except OmiError as exc:
            await _abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        try:
            await repository.unload(self.dataplane, request.model_name, dict(request.parameters))
        except OmiError as exc:
            await _abort(context, exc)
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(self, data: bytes, context: Context) -> bytes:
        # Bytes in and out (add_to_server): the request is parsed here, its raw contents left in
        # place (parse_request), and the reply comes serialized (serialize_response).
        began = time.perf_counter()
        try:
            request, raw = parse_request(data)
        except OmiError as exc:
            self._observe(None, exc.code, began, len(data), 0, pb.ModelInferRequest(), context, "ModelInfer")
            await _abort(context, exc)
        size = len(data)  # what the message holds, exactly: no need to count it from its tensors
        model = None
        trace = (
            tracing.start_rpc("grpc", SERVICE_NAME, "ModelInfer", context.invocation_metadata())
            if tracing.active
            else None
        )
        try:
            model = self.dataplane.get(request.model_name, request.model_version or None)  # NOT_FOUND first
            reply = await self._infer(model, request, raw, size, context.time_remaining())
        except OmiError as exc:
            self._observe(model, exc.code, began, size, 0, request, context, "ModelInfer")
            await _abort(context, exc)
        except Exception as exc:
            self._observe(model, ErrorCode.INTERNAL, began, size, 0, request, context, "ModelInfer")
            log.exception("unexpected error in ModelInfer")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal server error ({type(exc).__name__})")
        else:
            self._observe(model, None, began, size, len(reply), request, context, "ModelInfer")
            return reply
        finally:
            if trace is not None and not trace.ended:  # the client cancelled it
                trace.finish(model, request.model_version, "CANCELLED", None, time.perf_counter())
        raise AssertionError("unreachable")

    def _observe(
        self,
        model: Any,
        code: ErrorCode | None,
        began: float,
        size: int,
        sent: int,
        request: pb.ModelInferRequest,
        context: Context,
        rpc: str,
    ) -> None:
        outcome = "OK" if code is None else _CODE_NAME[code]
        seconds = time.perf_counter() - began
        self.observer.request("grpc", model, outcome, code, seconds, size, sent)
        trace = tracing.current() if tracing.active else None
        if trace is not None and not trace.ended:
            trace.finish(model, request.model_version, outcome, code, began + seconds)
        if self.access_log is not None:
            self.access_log(
                "grpc", rpc, request.model_name, request.model_version or (model.version if model else ""),
                outcome, seconds, size, sent, request.id or None, context.peer(),
            )  # fmt: skip

    async def ModelStreamInfer(self, requests: AsyncIterator[bytes], context: Context) -> None:
        # Triton's stream: each response of each request its own message (omi_adapters.grpc_stream).
        from omi_adapters.grpc_stream import stream_infer

        await stream_infer(self, requests, context)

    async def _infer(
        self, model: Any, request: pb.ModelInferRequest, raw: list[memoryview] | None, size: int, timeout: float | None
    ) -> bytes:
        with self.dataplane.admit(size):
            trace = tracing.current() if tracing.active else None
            began = time.perf_counter() if trace is not None else 0.0
            decoded = decode_request(request, raw)
            if trace is not None:
                trace.child("decode", began, time.perf_counter())
            response = await self.dataplane.run(model, decoded, timeout=timeout)
            if trace is not None:
                began = time.perf_counter()
            sent_raw = raw if raw is not None else request.raw_input_contents
            reply = serialize_response(response, typed=not sent_raw and bool(request.inputs))
            if trace is not None:
                trace.child("encode", began, time.perf_counter())
            return reply


async def _abort(context: Context, exc: OmiError) -> Any:
    if exc.retry_after is not None:
        # gRPC's retry pushback: a client with a retry policy waits this long before trying again.
        context.set_trailing_metadata((("grpc-retry-pushback-ms", str(int(exc.retry_after * 1000))),))
    await context.abort(GRPC_STATUS[exc.code], exc.message)


def add_to_server(server: grpc.aio.Server, dataplane: DataPlane) -> Health:
    """Register the OIP service, gRPC health checking and server reflection on ``server``.

    Returns the health service: SERVING (for "" and the OIP service) once every model can
    take requests; call its ``stop_watches()`` before stopping the server.
    """
    handlers = _method_handlers(InferenceServicer(dataplane))
    # ModelInfer takes and answers bytes, without protobuf's copies of raw contents.
    handlers["ModelInfer"] = handlers["ModelInfer"]._replace(
        request_deserializer=_as_sent, response_serializer=_as_sent
    )
    # ModelStreamInfer too: its requests are parsed, and its replies written, by omi_adapters.grpc_stream.
    handlers["ModelStreamInfer"] = handlers["ModelStreamInfer"]._replace(
        request_deserializer=_as_sent, response_serializer=_as_sent
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)

    def statuses(service: str) -> Any:
        if service not in ("", SERVICE_NAME):
            return None
        return SERVING if dataplane.ready() else NOT_SERVING

    return register(server, SERVICE_NAME, statuses)


def _as_sent(message: bytes) -> bytes:
    return message


class _Handlers:
    """Stands for a server to the generated registration function, keeping the handlers it registers."""

    handlers: dict[str, Any]

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers = dict(handlers)


def _method_handlers(servicer: InferenceServicer) -> dict[str, Any]:
    """The generated code's method handlers of ``servicer``, by method name."""
    capture = _Handlers()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, capture)  # type: ignore[no-untyped-call] # generated
    return capture.handlers
