"""Find the models a ``TARGET`` names: ``path/to/file.py[:attr]`` or ``package.module[:attr]``,
and, for the builders, where a loaded model's code lives (:func:`model_source`).

Without ``:attr`` every :class:`Model` defined at the module's top level is taken.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError

__all__ = ["ModelSource", "load_target", "load_targets", "model_source"]


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


@dataclass(frozen=True)
class ModelSource:
    """Where a model's code lives, for a build that must bring it along."""

    module: str  #: the name of the module that defines the model
    attr: str  #: the model's top-level name in that module
    #: The module's file when it is a model file (TARGET path/to/file.py) that travels as a copy;
    #: None for a module of a package, which must be installed where the model runs.
    file: Path | None


def model_source(model: Model) -> ModelSource:
    """Find the module and name of a loaded model, and whether its file can simply be copied."""
    module = sys.modules.get(getattr(model.target, "__module__", None) or "")
    if module is None:
        raise ConfigurationError(f"model '{model.name}': cannot find the module that defines it")
    attrs = [name for name, value in vars(module).items() if value is model]
    if not attrs:
        raise ConfigurationError(f"model '{model.name}' is not a top-level name of module '{module.__name__}'")
    file = getattr(module, "__file__", None)
    path = Path(file).resolve() if isinstance(file, str) else None
    # A package's file, even a top-level one's, is only its __init__.py: a package is installed.
    if path is None or not path.is_file() or "." in module.__name__ or hasattr(module, "__path__"):
        path = None
    return ModelSource(module.__name__, attrs[0], path)
