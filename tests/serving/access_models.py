"""The model of the access-control tests: adds one, and counts its calls in a file.

``$OMI_TEST_CALLS`` names the file; each predict call appends a line, so a test can tell that a
refused request never reached predict.
"""

from __future__ import annotations

import os

import numpy as np

from omi_adapters import Tensor, model


@model(
    name="counted",
    version="1",
    inputs=[Tensor("X", "FP32", [-1, -1])],
    outputs=[Tensor("Y", "FP32", [-1, -1])],
)
def counted(X: np.ndarray) -> np.ndarray:
    calls = os.environ.get("OMI_TEST_CALLS")
    if calls:
        with open(calls, "a") as out:
            out.write("call\n")
    return X + 1
