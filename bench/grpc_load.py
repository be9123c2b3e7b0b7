"""A gRPC load generator: one ``grpc.aio`` channel, a fixed number of calls in flight, latency per
call. The request is serialized once; replies are not parsed, only their status is checked. It
runs pinned to its own core, apart from the server."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
import numpy as np
from load import summary  # bench/ is this script's folder, first on sys.path

from omi_adapters.protos import open_inference_grpc_pb2 as pb

METHOD = "/inference.GRPCInferenceService/ModelInfer"
REQUEST = pb.ModelInferRequest(
    model_name="adder",
    inputs=[pb.ModelInferRequest.InferInputTensor(name="X", datatype="FP32", shape=[1, 4])],
    raw_input_contents=[np.array([1, 2, 3, 4], dtype=np.float32).tobytes()],
).SerializeToString()


async def _caller(call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], until: float, latencies: list[float]) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        await call(REQUEST)  # raises grpc.aio.AioRpcError on any status but OK
        latencies.append(time.perf_counter() - started)


async def run(target: str, calls: int, seconds: float) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            METHOD
        )  # no (de)serializers: bytes in, bytes out
        await _caller(call, time.perf_counter() + 0.5, [])  # warm up
        latencies: list[float] = []
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(_caller(call, until, latencies) for _ in range(calls)))
        elapsed = time.perf_counter() - started
    return summary(latencies, elapsed)


if __name__ == "__main__":
    target, calls, seconds = sys.argv[1:4]
    print(json.dumps(asyncio.run(run(target, int(calls), float(seconds)))))
