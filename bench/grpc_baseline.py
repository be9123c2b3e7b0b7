"""The gRPC baseline: a bare ``grpc.aio`` server on uvloop (as ``omi serve`` runs it) whose
``inference.GRPCInferenceService/ModelInfer`` answers every call with a fixed, pre-serialized
reply. It parses nothing and runs no model: the limit of grpcio that ``omi serve`` is held to.

A message of a MiB or more (the 4 MiB figure) gets the reply omi serve sends to it (Y = X + 1 of
the bench's tensor as raw contents, serialized on the first such call, not at start): a correct
server sends 4 MiB back, and the limit of grpcio is moving those bytes both ways.

Its ``ModelStreamInfer`` answers each request of the streaming figure (``bench/streaming.py``) as
omi serve does, with fixed bytes: as many token replies as the request's ``count`` asks for, each
written with ``context.write``, then the empty final reply. It parses each request for its count
and does nothing else: the limit of grpcio's one-write-at-a-time streams."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
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


@cache
def stream_replies() -> tuple[bytes, bytes]:
    """A token reply and the final one, as omi serve writes them for ``bench/stream_models.py``."""
    from omi_adapters.protos import open_inference_grpc_pb2 as pb

    def reply(final: bool, token: bool) -> bytes:
        message = pb.ModelStreamInferResponse()
        response = message.infer_response
        response.model_name, response.model_version, response.id = "tokens", "1", "bench"
        if token:
            response.outputs.add(name="text_output", datatype="BYTES", shape=[1])
            response.raw_output_contents.append(b"\x03\x00\x00\x00tok")
        response.parameters["triton_final_response"].bool_param = final
        return message.SerializeToString()

    return reply(False, True), reply(True, False)


async def stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
    from omi_adapters.protos import open_inference_grpc_pb2 as pb

    token, final = stream_replies()
    async for data in requests:
        request = pb.ModelInferRequest.FromString(data)
        for _ in range(int.from_bytes(request.raw_input_contents[0], "little")):
            await context.write(token)
        await context.write(final)


async def main(port: int) -> None:
    limit = 64 << 20  # omi serve's --max-message-bytes: 4 MiB uploads are over grpcio's default
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        infer
    )  # no (de)serializers: bytes in, bytes out
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService",
                {"ModelInfer": handler, "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(stream)},
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
