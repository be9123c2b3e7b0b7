"""The baseline: a bare Starlette route on uvicorn (httptools, uvloop) that answers every POST
with a fixed, pre-encoded OIP response. It does no decoding and no model work, so it marks the
limit of the transport that ``omi serve`` is measured against."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"model_name":"adder","model_version":"1","outputs":[{"name":"Y","datatype":"FP32","shape":[1,4],"data":[2.0,3.0,4.0,5.0]}]}'


async def infer(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


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
