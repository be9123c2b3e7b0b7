"""Models the OMI tests serve, in process and through ``omi serve tests/omi/models.py:NAME``."""

from __future__ import annotations

import time

import numpy as np

from omi_adapters import InvalidInputError, Tensor, model


@model(
    name="adder",
    version="2",
    inputs=[Tensor("X", "FP32", [-1, -1], description="any matrix", max_size="1K")],
    outputs=[Tensor("Y", "FP32", [-1, -1], description="X + 1")],
    author="Ada <ada@example.com>",
    description={"summary": "Adds one.", "details": "Adds one to every element.", "technical": "numpy",
                 "performance": "exact"},
    resources={"required_ram": "128M", "num_cpus": 0.5, "num_gpus": 0},
    timeouts={"status": "30s", "run": "20s"},
    features={"results_format": "json", "retrainable": True},
)  # fmt: skip
def adder(X: np.ndarray) -> np.ndarray:
    if np.isnan(X).any():
        raise ValueError("X holds NaN")
    return X + 1


@model(
    name="scaler",
    inputs=[Tensor("X", "FP64", [-1, 3])],
    outputs=[
        Tensor("Y", "FP64", [-1, 3], media_types=["application/x-npy"]),
        Tensor("BATCH", "INT32", [-1], description="how many items predict received with this one"),
    ],
    max_batch_size=4,
)
def scaler(X: np.ndarray) -> dict[str, np.ndarray]:
    if (X < 0).any():
        raise InvalidInputError("X must not be negative")
    return {"Y": X * 2, "BATCH": np.full(len(X), len(X), dtype=np.int32)}


@model(
    name="shout",
    inputs=[Tensor("TEXT", "BYTES", [-1], media_types=["text/plain", "application/json"], max_size="64")],
    outputs=[Tensor("UPPER", "BYTES", [-1], media_types=["text/plain"]), Tensor("WORDS", "INT32", [-1])],
    max_batch_size=8,
)
def shout(TEXT: np.ndarray) -> dict[str, np.ndarray]:
    texts = [t.decode("utf-8") for t in TEXT]
    return {
        "UPPER": np.array([t.upper().encode() for t in texts], dtype=object),
        "WORDS": np.array([len(t.split()) for t in texts], dtype=np.int32),
    }


@model(name="broken", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])], load="lazy")
class Broken:
    def load(self) -> None:
        raise RuntimeError("weights file is missing")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X


@model(
    name="slow",
    inputs=[Tensor("X", "FP32", [-1])],
    outputs=[Tensor("Y", "FP32", [-1])],
    timeouts={"run": "200ms"},
)
def slow(X: np.ndarray) -> np.ndarray:
    time.sleep(float(X[0]))
    return X


@model(
    name="steady",
    inputs=[Tensor("X", "FP32", [-1])],
    outputs=[Tensor("Y", "FP32", [-1])],
    timeouts={"run": "300ms"},
)
def steady(X: np.ndarray) -> np.ndarray:
    time.sleep(0.06)  # well within the run timeout, but more than it when queued behind several others
    return X


@model(
    name="drifty",
    inputs=[Tensor("X", "FP32", [-1, 2]), Tensor("detect_drift", "BOOL", [-1], optional=True)],
    outputs=[Tensor("Y", "FP32", [-1, 2]), Tensor("drift", "FP32", [-1])],
    max_batch_size=4,
    features={"drift_format": "score"},
)
def drifty(X: np.ndarray, detect_drift: np.ndarray | None = None) -> dict[str, np.ndarray]:
    asked = detect_drift if detect_drift is not None else np.zeros(len(X), dtype=bool)
    return {"Y": X, "drift": np.where(asked, np.abs(X).sum(axis=1), -1.0).astype(np.float32)}


LOADS: list[object] = []  # every Lazy.load call, to count them


@model(name="lazy", inputs=[Tensor("X", "INT64", [-1])], outputs=[Tensor("Y", "INT64", [-1])], load="lazy")
class Lazy:
    def load(self) -> None:
        LOADS.append(self)
        self.offset = 100

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X + self.offset


@model(
    name="sluggish",
    inputs=[Tensor("X", "INT64", [-1])],
    outputs=[Tensor("Y", "INT64", [-1])],
    load="lazy",
    timeouts={"status": "100ms"},
)
class Sluggish:
    def load(self) -> None:
        time.sleep(0.5)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X


@model(name="patient", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])], timeouts={"run": "10s"})
def patient(X: np.ndarray) -> np.ndarray:
    time.sleep(float(X[0]))
    return X
