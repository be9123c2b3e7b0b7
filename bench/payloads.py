"""The requests of ``bench/run.py``, built once and the same for every server, and the checks of
their answers: an OIP server must answer Y = X + 1 before its figures count.

- ``small``: one 1x4 FP32 tensor, as JSON (REST) or raw contents (gRPC ModelInfer).
- ``binary``: a 1xN FP32 tensor of 4 MiB with the binary tensor data extension, binary output.
- ``json``: a 1xN FP32 tensor as 4 MiB of JSON numbers written like ``0.123456``, binary output
  (the figure is the decoding of the request; the reply is the same as ``binary``'s).
- ``grpc_raw``: a 1xN FP32 tensor of 4 MiB as ModelInfer raw contents.

The bare baselines answer the large bodies with ``binary_reply`` and ``grpc_reply``, built once:
the bytes omi serve sends back, so that the limit they mark moves the same bytes both ways.
"""

from __future__ import annotations

import struct
from functools import cache

import numpy as np
import orjson

MIB = 1 << 20
INFER_PATH = "/v2/models/{model}/infer"
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
SMALL_X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
#: 4 MiB of FP32 values for the binary and gRPC bodies.
LARGE_ROWS = MIB
#: 4 MiB of JSON numbers: each is 8 characters and a comma.
JSON_ROWS = 4 * MIB // 9


def small_json(model: str = "adder", x: np.ndarray = SMALL_X) -> bytes:
    return orjson.dumps(
        {"inputs": [{"name": "X", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
    )


@cache
def large_x(rows: int) -> np.ndarray:
    # Values of six decimals (0.123456), so that the JSON body holds exactly the array's values.
    values = np.random.default_rng(7).integers(0, 1_000_000, rows) / 1e6
    return values.astype(np.float32).reshape(1, rows)


def binary_request(x: np.ndarray) -> tuple[bytes, int]:
    """A binary-extension body and its ``Inference-Header-Content-Length``."""
    raw = x.astype("<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "X", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": len(raw)}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + raw, len(header)


@cache
def large_binary() -> tuple[bytes, int]:
    return binary_request(large_x(LARGE_ROWS))


@cache
def large_json() -> bytes:
    x = large_x(JSON_ROWS)
    numbers = ",".join(f"{v:.6f}" for v in x.reshape(-1).tolist())
    head = f'{{"inputs":[{{"name":"X","datatype":"FP32","shape":[1,{x.shape[1]}],"data":['
    return (head + numbers + ']}],"parameters":{"binary_data_output":true}}').encode()


def grpc_request(x: np.ndarray, model: str = "adder") -> bytes:
    from omi_adapters.protos import open_inference_grpc_pb2 as pb

    return pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="X", datatype="FP32", shape=list(x.shape))],
        raw_input_contents=[x.astype("<f4").tobytes()],
    ).SerializeToString()


def binary_reply(x: np.ndarray) -> tuple[bytes, int]:
    """omi serve's answer to ``binary_request(x)`` or to a JSON body asking for binary output:
    Y = X + 1 as binary data, and its ``Inference-Header-Content-Length``."""
    raw = (x + 1).astype("<f4").tobytes()
    output = {"name": "Y", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": len(raw)}}
    header = orjson.dumps({"model_name": "adder", "model_version": "1", "outputs": [output]})
    return header + raw, len(header)


def grpc_reply(x: np.ndarray) -> bytes:
    """omi serve's answer to ``grpc_request(x)``: Y = X + 1 as raw contents."""
    from omi_adapters.protos import open_inference_grpc_pb2 as pb

    return pb.ModelInferResponse(
        model_name="adder",
        model_version="1",
        outputs=[pb.ModelInferResponse.InferOutputTensor(name="Y", datatype="FP32", shape=list(x.shape))],
        raw_output_contents=[(x + 1).astype("<f4").tobytes()],
    ).SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message, as h2load posts it."""
    return b"\0" + struct.pack(">I", len(message)) + message


def check_rest_reply(x: np.ndarray, headers: dict[str, str], body: bytes) -> None:
    """Raise unless ``body`` (JSON, or binary with the extension's header) holds Y = X + 1."""
    header_length = headers.get("inference-header-content-length")
    if header_length is None:
        (output,) = orjson.loads(body)["outputs"]
        y = np.asarray(output["data"], dtype=np.float32)
    else:
        (output,) = orjson.loads(body[: int(header_length)])["outputs"]
        y = np.frombuffer(body[int(header_length) :], dtype="<f4")
    _check(x, output["name"], output["shape"], y)


def check_grpc_reply(x: np.ndarray, reply: bytes) -> None:
    from omi_adapters.protos import open_inference_grpc_pb2 as pb

    response = pb.ModelInferResponse.FromString(reply)
    (output,) = response.outputs
    if response.raw_output_contents:
        y = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    else:
        y = np.asarray(output.contents.fp32_contents, dtype=np.float32)
    _check(x, output.name, list(output.shape), y)


def _check(x: np.ndarray, name: str, shape: list[int], y: np.ndarray) -> None:
    if name != "Y" or list(shape) != list(x.shape) or not np.allclose(y.reshape(x.shape), x + 1, atol=1e-6):
        raise RuntimeError(f"wrong answer: output {name!r} of shape {shape}, {y.reshape(-1)[:4]}... for {x.shape}")
