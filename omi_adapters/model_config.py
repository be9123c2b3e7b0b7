"""A model's Triton configuration (Triton's ``ModelConfig``), built from its contract in one place.

``omi build triton`` writes it as ``config.pbtxt`` (``omi_triton.config`` turns it into Triton's
protobuf message) and ``omi serve`` answers it to Triton's model configuration extension
(``GET /v2/models/{m}[/versions/{v}]/config``, gRPC ``ModelConfig``), so a client reads the same
configuration from either. It is kept here as plain data, in the JSON form Triton's HTTP endpoint
returns (Triton's model configuration extension, "config_version" 1): protobuf's JSON of the
message with the field names of ``model_config.proto`` and every field without presence printed
(enums by name, empty lists and maps included), and its 64-bit integers as JSON numbers, not the
strings of protobuf's JSON (as tritonserver answers them). The core needs no protobuf for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omi_adapters.errors import ConfigurationError

if TYPE_CHECKING:
    from omi_adapters.contract import Model, Tensor

__all__ = [
    "CODE_DIR",
    "TARGET_PARAMETER",
    "integer_version",
    "labels_filename",
    "model_config",
    "repository_target",
    "triton_dims",
    "version_target",
]

#: The ``ModelConfig.parameters`` key that tells Triton's Python backend (``omi_triton``) which
#: model to serve; it also marks a model folder as written by ``omi build triton``.
TARGET_PARAMETER = "omi_target"
#: The folder of a version that holds the model's code (``omi build triton``).
CODE_DIR = "code"


def model_config(
    versions: Sequence[Model],
    *,
    targets: Mapping[str, str] | None = None,
    instances: int = 1,
    max_queue_delay_us: int | None = None,
) -> dict[str, Any]:
    """The ``ModelConfig`` of one model name served in ``versions`` (one or more of its versions).

    Triton keeps one configuration per model for all its versions, so their tensors and batching
    must agree; the newest version's declaration is the configuration's, and
    ``version_policy.specific`` lists them all.

    Args:
        versions: the versions of one model. Triton's are positive integers (``omi build triton``
            checks them with :func:`integer_version`); others are left out of ``version_policy``.
        targets: where Triton's Python backend finds each version's code, by version (default:
            :func:`repository_target`, what ``omi build triton`` writes).
        instances: model instances (``instance_group`` count).
        max_queue_delay_us: the dynamic batcher's delay (default: the model's ``max_queue_delay``).

    Raises:
        ConfigurationError: the versions declare different tensors or batching.
    """
    ordered = sorted(versions, key=_version_order)
    newest = ordered[-1]
    for model in ordered[:-1]:
        if not same_contract(model, newest):
            raise ConfigurationError(
                f"model '{model.name}' version {model.version} declares other tensors or batching than version "
                f"{newest.version}; Triton keeps one configuration per model: give it another name"
            )
    targets = targets if targets is not None else {m.version: repository_target(m)[1] for m in ordered}
    batching = newest.max_batch_size > 0
    numbered = [int(m.version) for m in ordered if _numbered(m)]
    policy = newest.batch_policy
    dynamic_batching: dict[str, Any] = {}
    if policy is not None:
        delay = round(policy.max_queue_delay * 1e6) if max_queue_delay_us is None else max_queue_delay_us
        dynamic_batching["dynamic_batching"] = {
            "preferred_batch_size": list(policy.preferred_batch_sizes),
            "max_queue_delay_microseconds": delay,
            "preserve_ordering": False,
            "priority_levels": 0,
            "default_priority_level": 0,
            "priority_queue_policy": {},
        }
    # In the order of model_config.proto's fields, as tritonserver answers them.
    config: dict[str, Any] = {
        "name": newest.name,
        "platform": "",
        "backend": "python",
        "runtime": "",
        # Triton's versions are numbers; a model served only under other version names gets
        # Triton's default policy.
        "version_policy": {"specific": {"versions": numbered}} if numbered else {"latest": {"num_versions": 1}},
        "max_batch_size": newest.max_batch_size,
        "input": [_input(spec, batching) for spec in newest.inputs],
        "output": [_output(spec, batching) for spec in newest.outputs],
        "batch_input": [],
        "batch_output": [],
        **dynamic_batching,
        "instance_group": [
            {
                "name": "",
                "kind": "KIND_CPU",
                "count": instances,
                "gpus": [],
                "secondary_devices": [],
                "profile": [],
                "passive": False,
                "host_policy": "",
            }
        ],
        "default_model_filename": "",
        "cc_model_filenames": {},
        "metric_tags": {},
        "parameters": {TARGET_PARAMETER: {"string_value": targets[newest.version]}},
        "model_warmup": [],
    }
    if newest.streaming:
        # Each yield is one response (Triton's decoupled models): the backend sends them through
        # the request's response sender, which a model that is not decoupled may not use.
        config["model_transaction_policy"] = {"decoupled": True}
    if len(ordered) > 1:
        for model in ordered:
            config["parameters"][version_target(model.version)] = {"string_value": targets[model.version]}
    return config


def same_contract(a: Model, b: Model) -> bool:
    """Whether two models declare the same tensors, batching and streaming (one Triton configuration fits both)."""
    batching = a.max_batch_size > 0
    return (
        a.max_batch_size == b.max_batch_size
        and a.streaming == b.streaming
        and [_input(t, batching) for t in a.inputs] == [_input(t, batching) for t in b.inputs]
        and [_output(t, batching) for t in a.outputs] == [_output(t, batching) for t in b.outputs]
    )


def _dims(spec: Tensor, batching: bool) -> dict[str, Any]:
    """``dims`` without the batch dimension (model_config.proto). Triton refuses empty dims, so a
    tensor that is only a batch (or a scalar) is declared with Triton's reshape idiom, ``dims: [1]``
    and ``reshape { shape: [] }``: the model still sees shape ``[N]`` (or ``[]``), and Triton's
    clients send and receive ``[N, 1]`` (or ``[1]``)."""
    dims = list(spec.shape[1:] if batching else spec.shape)
    return {"dims": dims} if dims else {"dims": [1], "reshape": {"shape": []}}


def _input(spec: Tensor, batching: bool) -> dict[str, Any]:
    return {
        "name": spec.name,
        "data_type": data_type(spec.datatype),
        "format": "FORMAT_NONE",
        **_dims(spec, batching),
        "is_shape_tensor": False,
        "allow_ragged_batch": False,
        "optional": spec.optional,
        "is_non_linear_format_io": False,
    }


def _output(spec: Tensor, batching: bool) -> dict[str, Any]:
    return {
        "name": spec.name,
        "data_type": data_type(spec.datatype),
        **_dims(spec, batching),
        "label_filename": labels_filename(spec) if spec.labels else "",
        "is_shape_tensor": False,
        "is_non_linear_format_io": False,
    }


def data_type(datatype: str) -> str:
    """Triton's ``DataType`` name of an OIP datatype: ``TYPE_FP32``; BYTES is Triton's
    ``TYPE_STRING`` (Triton's model configuration docs, "Datatypes")."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def labels_filename(spec: Tensor) -> str:
    """The labels file of an output with ``labels``, in the model's folder (``label_filename``)."""
    return f"{spec.name}.labels.txt"


def triton_dims(shape: Sequence[int], batching: bool) -> list[int]:
    """The ``dims`` of a tensor of ``shape``: without the batch dimension when the model batches
    (model_config.proto); ``[1]`` when nothing is left (the reshape idiom of :func:`model_config`)."""
    return list(shape[1:] if batching else shape) or [1]


def version_target(version: str) -> str:
    """The parameter naming one version's target when a model has several (``omi_target_2``)."""
    return f"{TARGET_PARAMETER}_{version}"


def _numbered(model: Model) -> bool:
    return model.version.isdigit() and int(model.version) > 0


def _version_order(model: Model) -> tuple[int, int, str]:
    return (1, int(model.version), "") if _numbered(model) else (0, 0, model.version)


def integer_version(model: Model) -> int:
    """The model's version as Triton's version folders need it: a positive integer (Triton's
    model repository docs)."""
    if not model.version.isdigit() or int(model.version) < 1:
        raise ConfigurationError(
            f"model '{model.name}': Triton needs a positive integer version, got '{model.version}'"
        )
    return int(model.version)


def repository_target(model: Model) -> tuple[Path | None, str]:
    """The file ``omi build triton`` copies for ``model`` and the target its backend loads.

    A model file (TARGET ``path/to/file.py``) travels in the repository, so the target is relative
    to the version folder (``code/file.py:attr``); a module of a package is named as it is
    imported (``package.module:attr``), and the model environment must have the package installed.
    """
    from omi_adapters.targets import model_source

    source = model_source(model)
    if source.file is not None and source.module != "__main__":
        return source.file, f"{CODE_DIR}/{source.file.name}:{source.attr}"
    return None, f"{source.module}:{source.attr}"
