"""Models the serving tests need beyond the examples: one identity model per OIP datatype,
one whose predict raises, a slow one, one that never finishes loading, and a second version."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from omi_adapters import DATATYPES, Tensor, model


def _identity(datatype: str):
    @model(
        name=f"echo_{datatype.lower()}",
        inputs=[Tensor("IN", datatype, [-1])],
        outputs=[Tensor("OUT", datatype, [-1])],
    )
    def echo(IN: np.ndarray) -> np.ndarray:
        return IN

    return echo


ECHO = {datatype: _identity(datatype) for datatype in DATATYPES}
ECHOES = list(ECHO.values())


@model(name="failing", inputs=[Tensor("X", "INT32", [-1])], outputs=[Tensor("Y", "INT32", [-1])])
def failing(X: np.ndarray) -> np.ndarray:
    raise ValueError("the model cannot take negative numbers")


@model(name="slow", inputs=[Tensor("SECONDS", "FP32", [1])], outputs=[Tensor("DONE", "BOOL", [1])])
def slow(SECONDS: np.ndarray) -> np.ndarray:
    time.sleep(float(SECONDS[0]))
    return np.array([True])


_never = threading.Event()


@model(
    name="loading",
    inputs=[Tensor("X", "INT32", [-1])],
    outputs=[Tensor("Y", "INT32", [-1])],
    load="background",
    ready_timeout=0.2,
)
class Loading:
    """Its load waits until the process ends: readiness stays false, requests get 503."""

    def load(self) -> None:
        _never.wait(float(os.environ.get("OMI_TEST_LOAD_SECONDS", "3600")))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X


@model(name="adder", version="2", inputs=[Tensor("X", "FP32", [-1, -1])], outputs=[Tensor("Y", "FP32", [-1, -1])])
def adder_v2(X: np.ndarray) -> np.ndarray:
    return X + 2


@model(name="broken", inputs=[Tensor("X", "INT32", [-1])], outputs=[Tensor("Y", "INT32", [-1])], load="eager")
class Broken:
    """Its load fails: the server starts, says why, and is not ready."""

    def load(self) -> None:
        raise FileNotFoundError("weights.bin is missing")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X


@model(name="async_adder", inputs=[Tensor("X", "INT64", [-1])], outputs=[Tensor("Y", "INT64", [-1])])
async def async_adder(X: np.ndarray) -> np.ndarray:
    """An async predict runs on the server's loop."""
    import asyncio

    await asyncio.sleep(0)
    return X + 1
