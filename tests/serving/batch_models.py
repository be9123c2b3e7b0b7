"""A batching model that tells each caller how many rows shared its predict call."""

from __future__ import annotations

import time

import numpy as np

from omi_adapters import Tensor, model


@model(
    name="doubler",
    inputs=[Tensor("X", "FP32", [-1, -1])],
    outputs=[Tensor("Y", "FP32", [-1, -1]), Tensor("ROWS", "INT32", [-1])],
    max_batch_size=8,
    max_concurrency=1,  # one call at a time, as on one accelerator: requests queue and merge
)
def doubler(X: np.ndarray) -> dict[str, np.ndarray]:
    time.sleep(2.0 if (X == 99).any() else 0.1)
    if (X < 0).any():
        raise ValueError("a row is negative")
    return {"Y": X * 2, "ROWS": np.full(len(X), len(X), dtype=np.int32)}
