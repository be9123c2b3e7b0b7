"""A model with a BYTES output beside another output, for the tests of BYTES that are not text."""

from __future__ import annotations

import numpy as np

from omi_adapters import Tensor, model


@model(
    name="blobs",
    inputs=[Tensor("IN", "BYTES", [-1])],
    outputs=[Tensor("SAME", "BYTES", [-1]), Tensor("LENGTHS", "INT64", [-1])],
)
def blobs(IN: np.ndarray) -> dict[str, np.ndarray]:
    return {"SAME": IN, "LENGTHS": np.array([len(item) for item in IN], dtype=np.int64)}
