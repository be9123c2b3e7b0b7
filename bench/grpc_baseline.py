"""The gRPC baseline: a bare ``grpc.aio`` server on uvloop (as ``omi serve`` runs it) whose
``inference.GRPCInferenceService/ModelInfer`` answers every call with a fixed, pre-serialized
reply. It parses nothing and runs no model: the limit of grpcio that ``omi serve`` is held to.

A message of a MiB or more (the 4 MiB figure) gets the reply omi serve sends to it (Y = X + 1 of
the bench's tensor as raw contents, serialized on the first such call, not at start): a correct
server sends 4 MiB back, and the limit of grpcio is moving those bytes both ways."""

from __future__ import annotations

import sys
from functools import cache

import grpc
import payloads
import uvloop

REPLY = payloads.grpc_reply(payloads.SMALL_X)


#: Messages of this size or more get the large fixed reply.
LARGE = payloads.MIB


@cache
def large_reply() -> bytes:
    return payloads.grpc_reply(payloads.large_x(payloads.LARGE_ROWS))


async def infer(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return REPLY if len(request) < LARGE else large_reply()


async def main(port: int) -> None:
    limit = 64 << 20  # omi serve's --max-message-bytes: 4 MiB uploads are over grpcio's default
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        infer
    )  # no (de)serializers: bytes in, bytes out
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": handler})]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
