"""Standard gRPC health checking (``grpc.health.v1.Health``) read from the models when asked.

grpc_health's own servicer answers with statuses somebody has ``set()``; ours are computed on
every Check, and polled for every Watch, so a watcher sees a lazy or background load finish
(or fail) without anything having to tell it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["NOT_SERVING", "SERVING", "Health", "register"]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]


class Health(health_pb2_grpc.HealthServicer):
    """Health whose status for a service name is ``statuses(name)`` (None: an unknown service)."""

    def __init__(self, statuses: Callable[[str], Any], *, poll_seconds: float = 0.5) -> None:
        self._statuses = statuses
        self._poll_seconds = poll_seconds
        self._stopping = asyncio.Event()

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Context) -> health_pb2.HealthCheckResponse:
        status = self._statuses(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        # The health protocol: send the status now and again whenever it changes; an unknown
        # service is SERVICE_UNKNOWN, and the stream stays open in case it appears.
        last = None
        while True:
            stopping = self._stopping.is_set()
            status = NOT_SERVING if stopping else self._statuses(request.service)
            status = _UNKNOWN if status is None else status
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll_seconds)

    def stop_watches(self) -> None:
        """The server is stopping: tell every watcher NOT_SERVING and end its stream, so that no
        watch holds the server's graceful stop open until its deadline."""
        self._stopping.set()


def register(server: grpc.aio.Server, service: str, statuses: Callable[[str], Any]) -> Health:
    """Serve health checking (statuses from ``statuses``) and server reflection of ``service``,
    the health service and reflection itself on ``server``; returns the health service."""
    from grpc_reflection.v1alpha import reflection

    health = Health(statuses)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = (service, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    return health
