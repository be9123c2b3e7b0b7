"""Find the models a ``TARGET`` names: ``path/to/file.py[:attr]`` or ``package.module[:attr]``.

Without ``:attr`` every :class:`Model` defined at the module's top level is taken.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError

__all__ = ["load_target", "load_targets"]


def load_targets(targets: list[str]) -> list[Model]:
    """The models of every target, in order."""
    models: list[Model] = []
    for target in targets:
        models.extend(load_target(target))
    return models


def load_target(target: str) -> list[Model]:
    """The models one target names; raises :class:`ConfigurationError` naming what is wrong."""
    location, _, attr = target.partition(":")
    module = _import(location, target)
    if attr:
        obj: object = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ConfigurationError(f"{target}: module '{module.__name__}' has no attribute '{attr}'")
            obj = getattr(obj, part)
        found = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        for item in found:
            if not isinstance(item, Model):
                raise ConfigurationError(
                    f"{target}: '{attr}' is not a model made with @model, got {type(item).__name__}"
                )
        return found  # type: ignore[return-value]
    models = [value for value in vars(module).values() if isinstance(value, Model)]
    if not models:
        raise ConfigurationError(f"{target}: module '{module.__name__}' defines no @model")
    return models


def _import(location: str, target: str) -> ModuleType:
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location).resolve()
        if not path.is_file():
            raise ConfigurationError(f"{target}: no such file {location}")
        name = path.stem
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__file__", None) == str(path):
            return existing
        # The model's folder goes on sys.path so the model can import the files beside it.
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"{target}: cannot import {location}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        if exc.name and location.startswith(exc.name):
            raise ConfigurationError(f"{target}: no module named '{location}'") from None
        raise
