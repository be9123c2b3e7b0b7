"""A gRPC server that breaks the OIP's gRPC API and the OMI on purpose, for ``omi check`` to catch.

Run as ``python -m tests.check.broken_grpc PORT`` (a process of its own: it imports the
project's ``inference`` protos, which cannot share a process with tritonclient.grpc). It
serves one model ``m`` (``X FP32 [-1, 2]`` -> ``Y FP32 [-1, 2]``) and gets these wrong:
ModelInfer answers Y as INT32 and does not echo the ``id``, an input of the wrong datatype is
INTERNAL rather than INVALID_ARGUMENT, and an unknown model is UNKNOWN (ModelMetadata,
ModelInfer) or ready (ModelReady). On OMI, Status answers 500, and a Run item without the
model's input file fails without an ``error`` file.
"""

from __future__ import annotations

import sys
from concurrent import futures
from typing import Any

import grpc

from omi_adapters.protos import modzy_model_pb2 as omi
from omi_adapters.protos import modzy_model_pb2_grpc as omi_grpc
from omi_adapters.protos import open_inference_grpc_pb2 as pb
from omi_adapters.protos import open_inference_grpc_pb2_grpc as pb_grpc


class Inference(pb_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=True)

    def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(name="broken", version="0")

    def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=True)  # for any name, served or not

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        if request.name != "m":
            context.abort(grpc.StatusCode.UNKNOWN, "something went wrong")
        return pb.ModelMetadataResponse(
            name="m", versions=["1"], platform="python",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="X", datatype="FP32", shape=[-1, 2])],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name="Y", datatype="FP32", shape=[-1, 2])],
        )  # fmt: skip

    def ModelInfer(self, request: Any, context: Any) -> Any:
        if request.model_name != "m":
            context.abort(grpc.StatusCode.UNKNOWN, "something went wrong")
        [x] = request.inputs
        if x.datatype != "FP32":
            context.abort(grpc.StatusCode.INTERNAL, "Traceback (most recent call last): ...")
        reply = pb.ModelInferResponse(model_name="m", model_version="1")
        reply.outputs.add(name="Y", datatype="INT32", shape=list(x.shape)).contents.int_contents.extend([1, 2])
        return reply


class Omi(omi_grpc.ModzyModelServicer):
    def Status(self, request: Any, context: Any) -> Any:
        return omi.StatusResponse(
            status_code=500, status="Internal Server Error", message="Model Failed to Initialize.",
            model_info=omi.ModelInfo(model_name="m", model_version="1"),
            inputs=[omi.ModelInput(filename="X", accepted_media_types=["text/plain"])],
            outputs=[omi.ModelOutput(filename="Y", media_type="application/json")],
        )  # fmt: skip

    def Run(self, request: Any, context: Any) -> Any:
        reply = omi.RunResponse(status_code=200, status="OK", message="Inference executed")
        for item in request.inputs:
            ok = "X" in item.input
            reply.outputs.add(success=ok, output={"Y": b"[1, 2]"} if ok else {})
        return reply


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Inference(), server)  # type: ignore[no-untyped-call]
    omi_grpc.add_ModzyModelServicer_to_server(Omi(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
