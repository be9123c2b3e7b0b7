"""Drive a server's ``ModelStreamInfer`` with tritonclient.grpc's stream; prints a JSON report.

The same driver reads tritonserver (serving what `omi build triton` wrote) and `omi serve`, so
that a test can compare the two. Run as its own process: tritonclient.grpc's `inference`
messages cannot share a process with omi-adapters' (both register the ``inference`` package).

    python stream_driver.py HOST:PORT
"""

from __future__ import annotations

import json
import queue
import sys
from typing import Any

import numpy as np
from tritonclient import grpc


def tensor(name: str, datatype: str, value: np.ndarray) -> grpc.InferInput:
    item = grpc.InferInput(name, list(value.shape), datatype)
    item.set_data_from_numpy(value)
    return item


def markov(prompt: str, count: int, seed: int) -> list[grpc.InferInput]:
    return [
        tensor("text_input", "BYTES", np.array([prompt.encode()], dtype=object)),
        tensor("max_tokens", "INT32", np.array([count], dtype=np.int32)),
        tensor("seed", "INT64", np.array([seed], dtype=np.int64)),
    ]


def read(results: queue.Queue[Any], until: Any) -> list[dict[str, Any]]:
    """What the callback got, as JSON, until ``until(entry)`` is true for an entry."""
    got: list[dict[str, Any]] = []
    while True:
        result, error = results.get(timeout=60)
        if error is not None:
            entry: dict[str, Any] = {"error": error.message()}
        else:
            response = result.get_response()
            final = response.parameters.get("triton_final_response")
            entry = {
                "id": response.id,
                "final": final.bool_param if final is not None else None,
                "tokens": [t.decode() for t in result.as_numpy("text_output")] if response.outputs else [],
            }
        got.append(entry)
        if until(entry):
            return got


def main(url: str) -> None:
    client = grpc.InferenceServerClient(url)
    report: dict[str, Any] = {}
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer(
            "markov", markov("The river", 30, 5), request_id="empty", enable_empty_final_response=True
        )
        report["empty_final"] = read(results, lambda e: "error" in e or e["final"])
        client.async_stream_infer("markov", markov("The sea", 20, 2), request_id="plain")
        # Without the empty final response nothing says where the tokens end but their count.
        report["plain"] = [read(results, lambda e: True)[0] for _ in range(20)]
        client.async_stream_infer(
            "fails_midway",
            [tensor("tag", "BYTES", np.array([b"t"], dtype=object))],
            request_id="fails",
            enable_empty_final_response=True,
        )
        report["fails"] = read(results, lambda e: "error" in e or e["final"])
        client.async_stream_infer(
            "endless_async",
            [tensor("tag", "BYTES", np.array([sys.argv[2].encode()], dtype=object))],
            request_id="endless",
            enable_empty_final_response=True,
        )
        report["endless"] = read(results, lambda e: "error" in e or len(e["tokens"]) and e["tokens"][0] == "t2")
    finally:
        client.stop_stream(cancel_requests=True)  # the endless stream is still running
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
