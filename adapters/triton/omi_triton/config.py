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
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError

__all__ = [
    "TARGET_PARAMETER",
    "build_config",
    "integer_version",
    "model_config_pb2",
    "parse",
    "same_contract",
    "to_text",
    "triton_dims",
    "version_target",
]

#: The ``ModelConfig.parameters`` key that tells the backend which model to serve; it also
#: marks a model folder as written by ``omi build triton``.
TARGET_PARAMETER = "omi_target"
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
    """The ``ModelConfig`` message of ``model``.

    Args:
        model: the model to serve.
        target: where the backend finds it, relative to the version folder
            (``code/adder.py:adder``) or an importable ``package.module:attr``.
        instances: model instances (each a stub process that loads the model once).
        max_queue_delay_us: how long the dynamic batcher may hold a request to fill a batch
            (default: the model's ``max_queue_delay``). Triton's batcher then follows the same
            policy as ``omi serve``'s: the delay and the model's ``preferred_batch_sizes``.
    """
    pb = model_config_pb2()
    version = integer_version(model)
    config = pb.ModelConfig(name=model.name, backend="python", max_batch_size=model.max_batch_size)
    skip = 1 if model.max_batch_size > 0 else 0
    for spec in model.inputs:
        _set_dims(
            config.input.add(name=spec.name, data_type=_data_type(pb, spec.datatype), optional=spec.optional),
            spec.shape[skip:],
        )
    for spec in model.outputs:
        _set_dims(config.output.add(name=spec.name, data_type=_data_type(pb, spec.datatype)), spec.shape[skip:])
    policy = model.batch_policy
    if policy is not None:
        delay = round(policy.max_queue_delay * 1e6) if max_queue_delay_us is None else max_queue_delay_us
        config.dynamic_batching.max_queue_delay_microseconds = delay
        config.dynamic_batching.preferred_batch_size.extend(policy.preferred_batch_sizes)
    if model.streaming:
        # Each yield is one response (Triton's decoupled models): the backend sends them through
        # the request's response sender, which a non-decoupled model may not use.
        config.model_transaction_policy.decoupled = True
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=instances)
    config.version_policy.specific.versions.append(version)
    config.parameters[TARGET_PARAMETER].string_value = target
    return config


def to_text(config: Any) -> str:
    """``config.pbtxt`` text of a ``ModelConfig`` (protobuf text format)."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(config))


def parse(text: str) -> Any:
    """Parse ``config.pbtxt`` text back into a ``ModelConfig``."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def triton_dims(shape: Sequence[int], batching: bool) -> list[int]:
    """The ``dims`` of a tensor of ``shape``: without the batch dimension when the model batches
    (model_config.proto); ``[1]`` when nothing is left (see :func:`_set_dims`)."""
    return list(shape[1:] if batching else shape) or [1]


def _set_dims(tensor: Any, dims: Sequence[int]) -> None:
    """Triton refuses empty dims, so a tensor that is only a batch (or a scalar) is declared with
    Triton's reshape idiom, ``dims: [1]`` and ``reshape { shape: [] }``: the model still sees
    shape ``[N]`` (or ``[]``), and Triton's clients send and receive ``[N, 1]`` (or ``[1]``).
    """
    tensor.dims.extend(dims or [1])
    if not dims:
        tensor.reshape.SetInParent()


def version_target(version: str) -> str:
    """The parameter naming one version's target when a model has several (``omi_target_2``)."""
    return f"{TARGET_PARAMETER}_{version}"


def same_contract(a: Any, b: Any) -> bool:
    """Whether two ``ModelConfig`` messages declare the same tensors and batching."""
    return bool(
        a.input == b.input
        and a.output == b.output
        and a.max_batch_size == b.max_batch_size
        and a.model_transaction_policy.decoupled == b.model_transaction_policy.decoupled
    )


def integer_version(model: Model) -> int:
    # Triton's version folders are positive integers (model_repository.md).
    if not model.version.isdigit() or int(model.version) < 1:
        raise ConfigurationError(
            f"model '{model.name}': Triton needs a positive integer version, got '{model.version}'"
        )
    return int(model.version)


def _data_type(pb: ModuleType, datatype: str) -> int:
    # OIP names map onto Triton's TYPE_* names; BYTES is Triton's TYPE_STRING (Triton's model configuration, "Datatypes").
    return int(pb.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"))
