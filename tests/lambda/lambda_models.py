"""Models for the Lambda tests: one that fails, one that counts its loads, some that answer big."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from omi_adapters import Model, Tensor, model

#: One entry per load of :class:`Counter` in this process (an execution environment).
LOADS: list[int] = []


@model(name="failing", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
def failing(X: np.ndarray) -> np.ndarray:
    raise RuntimeError("this model always fails")


@model(name="exits", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
def exits(X: np.ndarray) -> np.ndarray:
    """A stray sys.exit() in model code: it must fail its request, not the execution environment."""
    sys.exit("the model called sys.exit")


@model(name="hangs", inputs=[Tensor("SECONDS", "FP32", [1])], outputs=[Tensor("Y", "FP32", [1])])
def hangs(SECONDS: np.ndarray) -> np.ndarray:
    time.sleep(float(SECONDS[0]))
    return SECONDS


class _Counter:
    def load(self) -> None:
        LOADS.append(os.getpid())

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {"LOADS": np.array([len(LOADS)], dtype=np.int32), "PID": np.array([os.getpid()], dtype=np.int64)}


def new_counter() -> Model:
    """A lazy model that counts its loads; a new one (never loaded) per call."""
    return model(
        name="counter",
        load="lazy",
        inputs=[Tensor("X", "FP32", [-1])],
        outputs=[Tensor("LOADS", "INT32", [1]), Tensor("PID", "INT64", [1])],
    )(_Counter)


Counter = new_counter()


@model(name="big", inputs=[Tensor("N", "INT64", [1])], outputs=[Tensor("Y", "UINT8", [-1])])
def big(N: np.ndarray) -> np.ndarray:
    return np.zeros(int(N[0]), dtype=np.uint8)


@model(name="tenths", inputs=[Tensor("N", "INT64", [1])], outputs=[Tensor("Y", "FP32", [-1])])
def tenths(N: np.ndarray) -> np.ndarray:
    return np.full(int(N[0]), 0.1, dtype=np.float32)


@model(name="letters", inputs=[Tensor("N", "INT64", [1])], outputs=[Tensor("Y", "BYTES", [-1])])
def letters(N: np.ndarray) -> np.ndarray:
    return np.full(int(N[0]), b"a", dtype=object)
