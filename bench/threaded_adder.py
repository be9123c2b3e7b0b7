"""The bundled adder with predict in the thread pool (the default for sync predicts): measured
beside the example, which runs on the loop, to show what the thread hand-off costs."""

import numpy as np

from omi_adapters import Tensor, model


@model(name="adder", version="1", inputs=[Tensor("X", "FP32", [-1, -1])], outputs=[Tensor("Y", "FP32", [-1, -1])])
def adder(X: np.ndarray) -> np.ndarray:
    return X + 1
