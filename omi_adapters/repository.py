"""Triton's model repository extension and model configuration extension over the served models.

The "repository" is the set of models ``omi serve`` was started with: the index lists each
version with its state, ``load`` runs a model's load again (the way to retry a failed load
without a restart, or to reload a ready model) and ``unload`` takes it out of service, until the
next ``load``. States are Triton's (its model repository extension): ``READY``, ``LOADING`` and
``UNAVAILABLE`` with a reason (``unloaded``, the load's failure, or a lazy model's first load
still to come).

An unloaded model is answered as Triton answers a model it does not serve: readiness false, and
inference, metadata and configuration refused with NOT_FOUND (REST 404) naming it
(:class:`~omi_adapters.errors.ModelUnloadedError`). Readiness of the server counts only the models
in service. Requests already running when it is unloaded finish.

``load`` and ``unload`` are served only when the DataPlane allows model control (``omi serve
--model-control-mode explicit``); otherwise they are refused with INVALID_ARGUMENT (REST 400), as
Triton refuses them outside its explicit mode. The index is always served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omi_adapters import model_config as config
from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane, in_thread
from omi_adapters.errors import ConfigurationError, InvalidInputError
from omi_adapters.loading import LoadState

__all__ = ["index", "load", "served_config", "unload"]

#: Triton's unload parameter for ensembles: accepted, and nothing to do (no model depends on another).
_UNLOAD_PARAMETERS = frozenset({"unload_dependents"})


def index(dataplane: DataPlane, ready: bool = False) -> list[dict[str, str]]:
    """Every served model version: ``name``, ``version``, ``state`` and, when there is one, ``reason``.

    ``ready``: only the versions ready now (Triton's ``ready`` flag of the index request).
    """
    entries = []
    for model in dataplane.models:
        state, reason = _state(model)
        if ready and state != "READY":
            continue
        entry = {"name": model.name, "version": model.version, "state": state}
        if reason:
            entry["reason"] = reason
        entries.append(entry)
    return entries


def _state(model: Model) -> tuple[str, str]:
    if model.unloaded:
        return "UNAVAILABLE", "unloaded"
    state = model.state
    if state is LoadState.READY:
        return "READY", ""
    if state is LoadState.LOADING:
        return "LOADING", ""
    if state is LoadState.FAILED:
        error = model.load_error
        text = f"{type(error).__name__}: {error}" if error is not None and str(error) else type(error).__name__
        return "UNAVAILABLE", f"load failed: {text}"
    return "UNAVAILABLE", "not loaded yet (a lazy model loads on its first request)"


async def load(dataplane: DataPlane, name: str, parameters: Mapping[str, Any] | None = None) -> None:
    """Load every version of model ``name`` again, in the dataplane's threads, and wait for it.

    A failed or unloaded model loads anew; a ready one reloads and serves on meanwhile (and if
    the reload fails). Raises :class:`~omi_adapters.errors.ModelLoadError` when a load fails,
    :class:`~omi_adapters.errors.ModelNotFoundError` for a model not served.
    """
    _check_control(dataplane)
    models = _versions(dataplane, name)
    for key in parameters or {}:
        # Triton's "config" and "file:" parameters load a new configuration or new files.
        raise InvalidInputError(
            f"model '{name}': load parameter '{key}' is not supported; omi serve loads the model it was started with"
        )
    for model in models:
        await in_thread(dataplane.executor, model.reload)


async def unload(dataplane: DataPlane, name: str, parameters: Mapping[str, Any] | None = None) -> None:
    """Take every version of model ``name`` out of service (a load in progress finishes first)."""
    _check_control(dataplane)
    models = _versions(dataplane, name)
    for key in parameters or {}:
        if key not in _UNLOAD_PARAMETERS:
            raise InvalidInputError(f"model '{name}': unknown unload parameter '{key}'")
    for model in models:
        await in_thread(dataplane.executor, model.unload)


def _check_control(dataplane: DataPlane) -> None:
    # Off by default, as in Triton's default mode: without a token, anybody could take a model out of service.
    if not dataplane.model_control:
        raise InvalidInputError(
            "model load and unload are not allowed: the server runs with --model-control-mode none "
            "(explicit allows them)"
        )


def served_config(dataplane: DataPlane, name: str, version: str | None = None) -> dict[str, Any]:
    """The model configuration ``omi serve`` answers: what ``omi build triton`` writes for the model.

    Of the versions served under the name, those declaring the same tensors and batching as the
    one asked for (the newest when none is) make one configuration, as in a built repository.
    """
    model = dataplane.get(name, version)
    model.check_in_service()
    versions = [m for m in dataplane.models if m.name == model.name and config.same_contract(m, model)]
    return config.model_config(versions, targets={m.version: _target(m) for m in versions})


def _target(model: Model) -> str:
    try:
        return config.repository_target(model)[1]
    except ConfigurationError:
        # Not a top-level name of its module (made in a loop, kept in a list): there is no
        # target to build from, so the configuration says what the model is.
        return f"{getattr(model.target, '__module__', '?')}:{model.name}"


def _versions(dataplane: DataPlane, name: str) -> list[Model]:
    dataplane.get(name)  # raises for a model not served
    return [m for m in dataplane.models if m.name == name]
