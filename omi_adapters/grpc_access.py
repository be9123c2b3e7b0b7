"""The bearer token on gRPC: a ``grpc.aio`` server interceptor for the OIP and OMI servers.

Every method but health, liveness and readiness (:data:`omi_adapters.access.GRPC_OPEN_METHODS`)
needs the metadata ``authorization: Bearer TOKEN``; a call without it ends with
``UNAUTHENTICATED`` before the method runs or reads a message. ``omi serve`` installs the
interceptor only when a token is set, so a server without one pays nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from omi_adapters.access import GRPC_OPEN_METHODS, TokenCheck

__all__ = ["TokenInterceptor"]

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]

MISSING = "this server requires a bearer token: send the metadata 'authorization: Bearer <token>'"
INVALID = "the bearer token is not valid for this server"


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but the open ones unless it carries ``authorization: Bearer TOKEN``."""

    def __init__(self, token: bytes, *, open_methods: frozenset[str] = GRPC_OPEN_METHODS) -> None:
        self._check = TokenCheck(token)
        self._open = open_methods

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        if handler_call_details.method in self._open:
            return await continuation(handler_call_details)
        authorization = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value
                break
        if authorization is not None and self._check(
            authorization.encode("utf-8", "replace") if isinstance(authorization, str) else authorization
        ):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method stays UNIMPLEMENTED
        return _refusal(handler, MISSING if authorization is None else INVALID)


def _refusal(handler: Handler, message: str) -> Handler:
    """A handler of the same kind as ``handler`` that ends the call UNAUTHENTICATED at once.

    Requests are left undeserialized and unread; for streaming replies grpc.aio awaits a
    coroutine (rather than iterating a generator), which aborts before writing anything.
    """

    async def refuse(request: Any, context: Context) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    serialize = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, response_serializer=serialize)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=serialize)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, response_serializer=serialize)
    return grpc.unary_unary_rpc_method_handler(refuse, response_serializer=serialize)
