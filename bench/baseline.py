"""The baseline: a bare Starlette route on uvicorn (httptools, uvloop) that answers every POST
with a fixed, pre-encoded OIP response. It does no decoding and no model work, so it marks the
limit of the transport that ``omi serve`` is measured against.

A body of a MiB or more (the 4 MiB figures) gets the bytes omi serve answers it with (Y = X + 1
of the bench's tensor as binary data, built on the first such request, not at start): a correct
server sends 4 MiB back, and the limit of the transport is moving those bytes both ways. The
request's ``Inference-Header-Content-Length`` header, not its body, tells the binary upload's
tensor from the JSON one's."""

from __future__ import annotations

import sys
from functools import cache

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"model_name":"adder","model_version":"1","outputs":[{"name":"Y","datatype":"FP32","shape":[1,4],"data":[2.0,3.0,4.0,5.0]}]}'


#: Bodies of this size or more get the large fixed reply.
LARGE = 1 << 20


@cache
def large_reply(binary: bool) -> tuple[bytes, dict[str, str]]:
    import payloads  # numpy and all: not on the way to this server's first answer (the cold start figure)

    body, header_length = payloads.binary_reply(payloads.large_x(payloads.LARGE_ROWS if binary else payloads.JSON_ROWS))
    return body, {"inference-header-content-length": str(header_length)}


async def infer(request: Request) -> Response:
    body = await request.body()
    if len(body) < LARGE:
        return Response(BODY, media_type="application/json")
    reply, headers = large_reply("inference-header-content-length" in request.headers)
    return Response(reply, headers=headers, media_type="application/octet-stream")


app = Starlette(routes=[Route("/v2/models/adder/infer", infer, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
    )
