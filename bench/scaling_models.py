"""Models for the two scaling figures of ``bench/run.py``.

- ``one_at_a_time`` and ``batched`` stand for one accelerator: predict takes a fixed 2 ms per
  call whatever the batch (it sleeps, as a thread waiting on a device does) and one call runs at
  a time (``max_concurrency=1``). ``batched`` is the same model with ``max_batch_size=16``, so
  that requests waiting for the device are merged into one call.
- ``gil_burner`` burns 1 ms of CPU per call in a pure-Python loop, holding the GIL: one process
  serves at most one core's worth of it, whatever its threads (``--workers`` is the remedy).
"""

import time

import numpy as np

from omi_adapters import Tensor, model

DEVICE_SECONDS = 0.002
BURN_SECONDS = 0.001
ROWS = [Tensor("X", "FP32", [-1, 4])]
OUT = [Tensor("Y", "FP32", [-1, 4])]


def _device(X: np.ndarray) -> np.ndarray:
    time.sleep(DEVICE_SECONDS)
    return X + 1


@model(name="one_at_a_time", inputs=ROWS, outputs=OUT, max_concurrency=1)
def one_at_a_time(X: np.ndarray) -> np.ndarray:
    return _device(X)


@model(name="batched", inputs=ROWS, outputs=OUT, max_concurrency=1, max_batch_size=16)
def batched(X: np.ndarray) -> np.ndarray:
    return _device(X)


@model(name="gil_burner", inputs=ROWS, outputs=OUT)
def gil_burner(X: np.ndarray) -> np.ndarray:
    # CPU time of this thread, so that the work is 1 ms of computation however busy the machine.
    end = time.thread_time() + BURN_SECONDS
    spins = 0
    while time.thread_time() < end:
        spins += 1
    return X + 1
