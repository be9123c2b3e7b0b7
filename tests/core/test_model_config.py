"""The model configuration built from the contract (Triton's ModelConfig, in its JSON form)."""

from __future__ import annotations

import numpy as np
import pytest

from omi_adapters import Tensor, model
from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError
from omi_adapters.model_config import model_config


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

