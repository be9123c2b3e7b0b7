"""The model configuration built from the contract (Triton's ModelConfig, in its JSON form), for the
versions ``omi serve`` may serve that ``omi build triton`` refuses."""

from __future__ import annotations

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import ConfigurationError
from omi_adapters.model_config import integer_version, model_config
from omi_adapters.repository import served_config


def _version(version: str, width: int) -> Model:
    @model(name="m", version=version, inputs=[Tensor("X", "FP32", [width])], outputs=[Tensor("Y", "FP32", [width])])
    def m(X: np.ndarray) -> np.ndarray:
        return X

    return m


def test_versions_sharing_a_declaration_make_one_configuration_and_others_are_refused() -> None:
    one, two, wide = _version("1", 2), _version("2", 2), _version("3", 5)
    config = model_config([two, one], targets={"1": "a:m", "2": "b:m"})
    assert config["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert config["parameters"] == {
        "omi_target": {"string_value": "b:m"},
        "omi_target_1": {"string_value": "a:m"},
        "omi_target_2": {"string_value": "b:m"},
    }
    with pytest.raises(ConfigurationError, match="version 1 declares other tensors or batching than version 3"):
        model_config([one, two, wide], targets={"1": "", "2": "", "3": ""})


def test_omi_serve_answers_the_configuration_of_the_versions_that_agree_and_of_named_versions() -> None:
    one, wide, beta = _version("1", 2), _version("3", 5), _version("beta", 2)
    plane = DataPlane([one, wide, beta])
    assert served_config(plane, "m", "1")["version_policy"] == {"specific": {"versions": [1]}}
    assert served_config(plane, "m", "3")["input"][0]["dims"] == [5]
    with pytest.raises(ConfigurationError, match="Triton needs a positive integer version, got 'beta'"):
        integer_version(beta)  # omi build triton refuses it, omi serve answers Triton's default policy
    alone = DataPlane([beta])
    assert served_config(alone, "m")["version_policy"] == {"latest": {"num_versions": 1}}
