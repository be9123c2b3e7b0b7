"""A scikit-learn classifier of iris flowers (class style, loaded lazily from a saved artifact).

The artifact is ``iris.joblib`` beside this file (or ``$IRIS_MODEL_PATH``). When it does not
exist yet, ``load`` trains the classifier on the iris data that ships with scikit-learn and
saves it first, so a fresh checkout serves without a separate training step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from omi_adapters import Tensor, model

ARTIFACT = Path(os.environ.get("IRIS_MODEL_PATH", Path(__file__).with_name("iris.joblib")))


def train(path: Path = ARTIFACT) -> None:
    """Fit a logistic regression on scikit-learn's iris data and save it with joblib."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    classifier = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    classifier.target_names_ = np.array([str(n) for n in data.target_names])
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    joblib.dump(classifier, tmp)
    os.replace(tmp, path)  # atomic: concurrent loaders never read a half-written file


@model(
    name="iris",
    version="1",
    inputs=[
        Tensor("features", "FP64", [-1, 4], description="sepal length, sepal width, petal length, petal width (cm)")
    ],
    outputs=[
        Tensor("probabilities", "FP32", [-1, 3]),
        Tensor("label", "BYTES", [-1]),
    ],
    load="lazy",
    max_batch_size=64,
    author="omi-adapters",
    description={
        "summary": "Iris species from flower measurements.",
        "technical": "LogisticRegression on the iris data set.",
    },
    resources={"required_ram": "256M", "num_cpus": 0.5},
)
class Iris:
    def load(self) -> None:
        import joblib

        if not ARTIFACT.exists():
            train(ARTIFACT)
        self.classifier = joblib.load(ARTIFACT)
        self.names = self.classifier.target_names_

    def predict(self, features: np.ndarray) -> dict[str, np.ndarray]:
        probabilities = self.classifier.predict_proba(features)
        labels = self.names[probabilities.argmax(axis=1)]
        return {
            "probabilities": probabilities.astype(np.float32),
            "label": np.array([label.encode() for label in labels], dtype=object),
        }


if __name__ == "__main__":
    train()
    print(f"saved {ARTIFACT}")
