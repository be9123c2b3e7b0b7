"""Models for the Knative tests: a slow one (SIGTERM arrives while it runs), one that takes a
second to load in the background, and one whose OMI metadata asks for much."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from omi_adapters import Tensor, model


@model(name="slow", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
def slow(X: np.ndarray) -> np.ndarray:
    # The marker file tells the test the request is in flight before it sends SIGTERM.
    marker = os.environ.get("OMI_TEST_MARKER")
    if marker:
        Path(marker).touch()
    time.sleep(float(os.environ.get("OMI_TEST_DELAY", "2")))
    return X * 2


@model(name="warming", inputs=[Tensor("X", "INT32", [-1])], outputs=[Tensor("Y", "INT32", [-1])], load="background")
class Warming:
    """Loads in a thread until the file ``$OMI_TEST_GATE`` exists: readiness says 503 meanwhile."""

    def load(self) -> None:
        gate = os.environ.get("OMI_TEST_GATE")
        deadline = time.monotonic() + 30
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X


@model(
    name="Big_Model.v2",
    version="3",
    inputs=[Tensor("X", "FP32", [-1, 3])],
    outputs=[Tensor("Y", "FP32", [-1, 3])],
    resources={"required_ram": "2Gi", "num_cpus": 0.5, "num_gpus": 1},
    timeouts={"status": "5m", "run": "90s"},
)
def big(X: np.ndarray) -> np.ndarray:
    return X
