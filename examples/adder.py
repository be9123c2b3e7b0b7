"""A trivial numeric model: adds one to every element (function style)."""

import numpy as np

from omi_adapters import Tensor, model


@model(
    name="adder",
    version="1",
    inputs=[Tensor("X", "FP32", [-1, -1])],
    outputs=[Tensor("Y", "FP32", [-1, -1])],
    description="Adds one to every element of X.",
    # Adding one takes a microsecond: run it on the event loop, not in the thread pool.
    run_in_thread=False,
)
def adder(X: np.ndarray) -> np.ndarray:
    return X + 1
