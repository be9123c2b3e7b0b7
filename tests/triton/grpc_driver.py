"""Drive the tritonserver of the Triton tests over gRPC with tritonclient.grpc; prints a JSON report.

Run as its own process: tritonclient.grpc's `inference` messages cannot share a process with
omi-adapters' (both register the ``inference`` protobuf package)."""

from __future__ import annotations

import json
import sys

import ml_dtypes
import numpy as np
from tritonclient import grpc
from tritonclient.utils import InferenceServerException


def tensor(name: str, datatype: str, value: np.ndarray) -> grpc.InferInput:
    item = grpc.InferInput(name, list(value.shape), datatype)
    item.set_data_from_numpy(value)
    return item


def main(url: str) -> None:
    client = grpc.InferenceServerClient(url)
    report: dict[str, object] = {"live": client.is_server_live(), "ready": client.is_model_ready("adder")}
    meta = client.get_model_metadata("adder", as_json=True)
    report["adder_metadata"] = {
        side: [[t["name"], t["datatype"], [int(d) for d in t["shape"]]] for t in meta[side]]
        for side in ("inputs", "outputs")
    }
    x = np.array([[0.5, 1.5], [2.5, 3.5]], dtype=np.float32)
    report["adder"] = client.infer("adder", [tensor("X", "FP32", x)]).as_numpy("Y").tolist()
    text = client.infer("text", [tensor("TEXT", "BYTES", np.array([[b"hello grpc"], [b"b"]], dtype=object))])
    report["text"] = {
        "UPPER": [[v.decode() for v in row] for row in text.as_numpy("UPPER")],
        "WORDS": text.as_numpy("WORDS").tolist(),
    }
    kinds = client.infer(
        "kinds",
        [
            tensor("FLAGS", "BOOL", np.array([True, False])),
            tensor("HALF", "FP16", np.array([1, 2], dtype=np.float16)),
            tensor("BRAIN", "BF16", np.array([1, -2], dtype=ml_dtypes.bfloat16)),
            tensor("WORDS", "BYTES", np.array([b"abc", b""], dtype=object)),
            tensor("SMALL", "INT8", np.array([1, 2], dtype=np.int8)),
            tensor("BIG", "UINT64", np.array([1, 2], dtype=np.uint64)),
        ],
    )
    report["kinds"] = {
        "REVERSED": [v.decode() for v in kinds.as_numpy("REVERSED")],
        "NOT_FLAGS": kinds.as_numpy("NOT_FLAGS").tolist(),
        "BRAIN_THIRD": kinds.as_numpy("BRAIN_THIRD").astype(np.float32).tolist(),
    }
    try:
        client.infer("picky", [tensor("X", "FP64", np.array([-1.0]))])
        report["bad"] = None
    except InferenceServerException as exc:
        report["bad"] = {"code": str(exc.status()), "message": exc.message()}
    report["after_bad"] = client.infer("picky", [tensor("X", "FP64", np.array([4.0]))]).as_numpy("Y").tolist()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
