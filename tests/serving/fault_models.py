"""Models that misbehave as user code does: they exit, interrupt, hang, or ignore their deadline."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

from omi_adapters import Tensor, model

IO = {"inputs": [Tensor("X", "FP32", [-1])], "outputs": [Tensor("Y", "FP32", [-1])]}
SLOW = {"inputs": [Tensor("SECONDS", "FP32", [1])], "outputs": [Tensor("DONE", "BOOL", [1])]}


@model(name="exits", **IO)
def exits(X: np.ndarray) -> np.ndarray:
    sys.exit("the model called sys.exit")


@model(name="interrupts", **IO)
async def interrupts(X: np.ndarray) -> np.ndarray:
    raise KeyboardInterrupt


@model(name="quick", **IO)
def quick(X: np.ndarray) -> np.ndarray:
    return X + 1


@model(name="hangs", **SLOW, max_concurrency=2, max_queue=4)
def hangs(SECONDS: np.ndarray) -> np.ndarray:
    """A sync predict that sleeps as long as asked: past its deadline it keeps its thread."""
    time.sleep(float(SECONDS[0]))
    return np.array([True])


@model(name="async_hangs", **SLOW)
async def async_hangs(SECONDS: np.ndarray) -> np.ndarray:
    """An async predict that sleeps; when cancelled it leaves a mark in $OMI_TEST_MARKS."""
    try:
        await asyncio.sleep(float(SECONDS[0]))
    except asyncio.CancelledError:
        marks = os.environ.get("OMI_TEST_MARKS")
        if marks:
            with Path(marks).open("a") as out:  # noqa: ASYNC230 - a test mark, once, as the task ends
                out.write(f"cancelled {SECONDS[0]}\n")
        raise
    return np.array([True])


@model(name="misshapen", **IO)
def misshapen(X: np.ndarray) -> np.ndarray:
    return np.zeros((2, 3, 4))  # breaks the declared output: three dimensions, float64
