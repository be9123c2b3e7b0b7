"""A model's ``config.pbtxt``, built as Triton's own ``ModelConfig`` protobuf message.

The message class is the one tritonclient ships (``tritonclient/grpc/model_config_pb2.py``,
generated from Triton's ``model_config.proto``), so the text written is what Triton parses
(Triton's Python backend README, "Usage"). It is loaded from its file rather than imported as
``tritonclient.grpc.model_config_pb2``: importing the ``tritonclient.grpc`` package also loads
tritonclient's ``inference`` service messages, which clash with omi-adapters' own OIP messages
in one process (both register the ``inference`` protobuf package); ``model_config.proto`` alone does not.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError
from omi_adapters.model_config import TARGET_PARAMETER, integer_version, model_config, triton_dims, version_target

__all__ = [
    "TARGET_PARAMETER",
    "build_config",
    "integer_version",
    "model_config_pb2",
    "parse",
    "same_contract",
    "to_message",
    "to_text",
    "triton_dims",
    "version_target",
]

_MODULE = "omi_triton._model_config_pb2"


def model_config_pb2() -> ModuleType:
    """Triton's ``model_config_pb2`` module, from the installed tritonclient."""
    module = sys.modules.get(_MODULE)
    if module is not None:
        return module
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "omi build triton needs tritonclient for Triton's ModelConfig: pip install 'omi-adapters-triton[build]'"
        )
    path = Path(next(iter(spec.submodule_search_locations)), "grpc", "model_config_pb2.py")
    file_spec = importlib.util.spec_from_file_location(_MODULE, path)
    if not path.exists() or file_spec is None or file_spec.loader is None:
        raise ConfigurationError(f"tritonclient has no {path.name}: pip install 'omi-adapters-triton[build]'")
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    sys.modules[_MODULE] = module
    return module


def build_config(
    model: Model,
    target: str,
    *,
    instances: int = 1,
    max_queue_delay_us: int | None = None,
) -> Any:
    """The ``ModelConfig`` message of ``model`` (:func:`omi_adapters.model_config.model_config`).

    Args:
        model: the model to serve.
        target: where the backend finds it, relative to the version folder
            (``code/adder.py:adder``) or an importable ``package.module:attr``.
        instances: model instances (each a stub process that loads the model once).
        max_queue_delay_us: how long the dynamic batcher may hold a request to fill a batch
            (default: the model's ``max_queue_delay``). Triton's batcher then follows the same
            policy as ``omi serve``'s: the delay and the model's ``preferred_batch_sizes``.
    """
    integer_version(model)
    return to_message(
        model_config(
            [model], targets={model.version: target}, instances=instances, max_queue_delay_us=max_queue_delay_us
        )
    )


def to_message(config: dict[str, Any]) -> Any:
    """The ``ModelConfig`` message of a configuration in Triton's JSON form."""
    from google.protobuf import json_format

    return json_format.ParseDict(config, model_config_pb2().ModelConfig())


def to_text(config: Any) -> str:
    """``config.pbtxt`` text of a ``ModelConfig`` (protobuf text format)."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(config))


def parse(text: str) -> Any:
    """Parse ``config.pbtxt`` text back into a ``ModelConfig``."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def same_contract(a: Any, b: Any) -> bool:
    """Whether two ``ModelConfig`` messages declare the same tensors and batching."""
    return bool(
        a.input == b.input
        and a.output == b.output
        and a.max_batch_size == b.max_batch_size
        and a.model_transaction_policy.decoupled == b.model_transaction_policy.decoupled
    )
