"""Models for Triton's extensions (classification, model repository) against ``omi serve``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from omi_adapters import Tensor, model

ANIMALS = ["cat", "dog", "bird"]


@model(
    name="scores",
    inputs=[Tensor("X", "FP32", [-1])],
    outputs=[Tensor("LABELLED", "FP32", [-1], labels=ANIMALS), Tensor("PLAIN", "INT32", [-1])],
)
def scores(X: np.ndarray) -> dict[str, np.ndarray]:
    """The scores as given (with labels) and times ten as integers (without)."""
    return {"LABELLED": X, "PLAIN": (X * 10).astype(np.int32)}


@model(
    name="batched_scores",
    max_batch_size=8,
    inputs=[Tensor("X", "FP32", [-1, 3])],
    outputs=[Tensor("Y", "FP32", [-1, 3], labels=ANIMALS)],
)
def batched_scores(X: np.ndarray) -> np.ndarray:
    return X


@model(name="flaky", inputs=[Tensor("X", "INT32", [-1])], outputs=[Tensor("Y", "INT32", [-1])])
class Flaky:
    """Fails its first load, succeeds once ``$OMI_TEST_FLAKY_FLAG`` names a file that exists
    (the first load creates it): the repository extension's load retries it."""

    def load(self) -> None:
        flag = Path(os.environ["OMI_TEST_FLAKY_FLAG"])
        if not flag.exists():
            flag.write_text("tried once\n")
            raise RuntimeError("the weights are not there yet")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X
