"""Models that exercise the Triton adapter beyond the examples: every awkward datatype, a lazily
loaded class, a batching model that reports the batches it sees, one that fails on demand,
two that raise what is not an Exception (SystemExit, KeyboardInterrupt); and two versions of one model."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import numpy as np

from omi_adapters import InvalidInputError, Tensor, model


@model(
    name="kinds",
    inputs=[
        Tensor("FLAGS", "BOOL", [-1]),
        Tensor("HALF", "FP16", [-1]),
        Tensor("BRAIN", "BF16", [-1]),
        Tensor("WORDS", "BYTES", [-1]),
        Tensor("SMALL", "INT8", [-1]),
        Tensor("BIG", "UINT64", [-1]),
    ],
    outputs=[
        Tensor("NOT_FLAGS", "BOOL", [-1]),
        Tensor("HALF_TWICE", "FP16", [-1]),
        Tensor("BRAIN_THIRD", "BF16", [-1]),
        Tensor("REVERSED", "BYTES", [-1]),
        Tensor("SMALL_SQUARED", "INT16", [-1]),
        Tensor("BIG_PLUS_ONE", "UINT64", [-1]),
    ],
)
def kinds(FLAGS, HALF, BRAIN, WORDS, SMALL, BIG):
    # BF16 arrives as float32 holding bfloat16 values; x/3 must be rounded back to BF16.
    return {
        "NOT_FLAGS": ~FLAGS,
        "HALF_TWICE": HALF * 2,
        "BRAIN_THIRD": BRAIN / 3,
        "REVERSED": np.array([w[::-1] for w in WORDS], dtype=object),
        "SMALL_SQUARED": SMALL.astype(np.int16) ** 2,
        "BIG_PLUS_ONE": BIG + np.uint64(1),
    }


@model(
    name="lazy_counter",
    inputs=[Tensor("X", "INT32", [-1])],
    outputs=[Tensor("LOADS", "INT32", [1]), Tensor("LOADED_AT", "FP64", [1]), Tensor("PID", "INT64", [1])],
    load="lazy",
)
class LazyCounter:
    loads = 0

    def load(self) -> None:
        type(self).loads += 1
        self.loaded_at = time.time()

    def predict(self, X):
        return {
            "LOADS": np.array([type(self).loads], dtype=np.int32),
            "LOADED_AT": np.array([self.loaded_at]),
            "PID": np.array([os.getpid()], dtype=np.int64),
        }


@model(
    name="batcher",
    inputs=[Tensor("X", "FP32", [-1, 2])],
    outputs=[Tensor("Y", "FP32", [-1, 2]), Tensor("BATCH", "INT32", [-1])],
    max_batch_size=8,
)
def batcher(X):
    time.sleep(0.3)  # slow enough that concurrent requests queue up behind a running call
    if np.isnan(X).any():
        raise ValueError("a row holds NaN")
    return {"Y": X * 2, "BATCH": np.full(len(X), len(X), dtype=np.int32)}


@model(name="picky", inputs=[Tensor("X", "FP64", [-1])], outputs=[Tensor("Y", "FP64", [-1])])
async def picky(X):
    await asyncio.sleep(0)
    if (X < 0).any():
        raise InvalidInputError("X must not be negative")
    if np.isnan(X).any():
        raise ZeroDivisionError("nan is not a number")
    return np.sqrt(X)


@model(name="exits", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
def exits(X):
    sys.exit("the model called sys.exit")


@model(name="interrupted", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
async def interrupted(X):
    raise KeyboardInterrupt


VERSIONED = {"inputs": [Tensor("X", "FP32", [-1])], "outputs": [Tensor("Y", "FP32", [-1])]}


@model(name="versioned", version="1", **VERSIONED)
def versioned_v1(X):
    return X + 1


@model(name="versioned", version="2", **VERSIONED)
def versioned_v2(X):
    return X * 10
