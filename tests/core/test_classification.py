"""Triton's classification extension in the core: the top-k strings of an output, and refusals."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.classification import class_count, classify
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import ConfigurationError, InvalidInputError
from omi_adapters.types import InferenceRequest, InputTensor, RequestedOutput


def test_values_are_printed_as_triton_prints_them_highest_first_and_ties_by_index() -> None:
    assert classify(np.array([1, 5, 10, 4], np.float32), 2, batched=False).tolist() == [b"10.000000:2", b"5.000000:1"]
    assert classify(np.array([3, 3, 7], np.int64), 3, batched=False).tolist() == [b"7:2", b"3:0", b"3:1"]
    # uint64 past int64, and negative floats: compared in their own type.
    big = np.array([1, 2**64 - 1, 2**63], np.uint64)
    assert classify(big, 2, batched=False).tolist() == [b"18446744073709551615:1", b"9223372036854775808:2"]
    assert classify(np.array([-2.5, -0.5], np.float64), 1, batched=False).tolist() == [b"-0.500000:1"]


def test_labels_name_the_indices_they_cover_and_k_is_at_most_the_classes() -> None:
    top = classify(np.array([0.2, 0.5, 0.3], np.float32), 9, batched=False, labels=["a", "b"])
    assert top.tolist() == [b"0.500000:1:b", b"0.300000:2", b"0.200000:0:a"]


def test_a_batch_is_classified_row_by_row() -> None:
    data = np.array([[[0.1, 0.9]], [[0.8, 0.2]], [[0.5, 0.5]]], np.float32)  # [3, 1, 2]: each row has 2 values
    top = classify(data, 1, batched=True)
    assert top.shape == (3, 1)
    assert top.tolist() == [[b"0.900000:1"], [b"0.800000:0"], [b"0.500000:0"]]
    assert classify(np.zeros((0, 4), np.float32), 2, batched=True).shape == (0, 2)


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_a_count_that_is_not_a_positive_integer_is_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match="output 'Y': classification must be an integer >= 1"):
        class_count(value, "Y", "FP32")  # type: ignore[arg-type]


@pytest.mark.parametrize("datatype", ["BYTES", "BOOL"])
def test_a_non_numeric_output_cannot_be_classified(datatype: str) -> None:
    with pytest.raises(InvalidInputError, match=f"classification needs a numeric output, 'Y' is {datatype}"):
        class_count(2, "Y", datatype)


def test_labels_are_declared_on_outputs_only_one_per_line() -> None:
    with pytest.raises(ConfigurationError, match="input 'X' has labels; only outputs can"):

        @model(inputs=[Tensor("X", "FP32", [-1], labels=["a"])], outputs=[Tensor("Y", "FP32", [-1])])
        def f(X: np.ndarray) -> np.ndarray:
            return X

    with pytest.raises(ConfigurationError, match="labels must be strings without line breaks"):
        Tensor("Y", "FP32", [-1], labels=["a\nb"])
    with pytest.raises(ConfigurationError, match="labels must be a list of strings"):
        Tensor("Y", "FP32", [-1], labels="ab")


@model(
    name="two",
    inputs=[Tensor("X", "FP32", [-1])],
    outputs=[Tensor("Y", "FP32", [-1], labels=["no", "yes"]), Tensor("Z", "BYTES", [-1])],
)
def two(X: np.ndarray) -> dict[str, np.ndarray]:
    return {"Y": X, "Z": np.array([b"z"] * len(X), dtype=object)}


def _request(**outputs: dict[str, object]) -> InferenceRequest:
    x = np.array([0.25, 0.75], np.float32)
    return InferenceRequest(
        inputs=[InputTensor("X", "FP32", x.shape, x)],
        outputs=[RequestedOutput(name, dict(params)) for name, params in outputs.items()],  # type: ignore[arg-type]
    )


def test_the_dataplane_answers_a_classified_output_as_bytes_and_others_as_they_are() -> None:
    plane = DataPlane([two])
    plane.start()
    response = asyncio.run(plane.infer("two", None, _request(Y={"classification": 1}, Z={})))
    y, z = response.outputs
    assert (y.datatype, y.shape, y.data.tolist()) == ("BYTES", (1,), [b"0.750000:1:yes"])
    assert (z.datatype, z.data.tolist()) == ("BYTES", [b"z", b"z"])
    with pytest.raises(InvalidInputError, match="'Z' is BYTES"):
        asyncio.run(plane.infer("two", None, _request(Z={"classification": 1})))
