"""Find the models a ``TARGET`` names: ``path/to/file.py[:attr]`` or ``package.module[:attr]``,
and, for the builders, where a loaded model's code lives (:func:`model_source`).

Without ``:attr`` every :class:`Model` defined at the module's top level is taken.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError, OmiError

__all__ = [
    "BUILD_IGNORE",
    "MODULE_PREFIX",
    "ModelImportError",
    "ModelSource",
    "copy_source",
    "load_target",
    "load_targets",
    "model_source",
]

#: What a build never copies from a model's files: Python's own caches.
BUILD_IGNORE = ("__pycache__", "*.pyc")


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
    models = [value for value in vars(module).values() if isinstance(value, Model)]
    if attr:
        obj: object = module
        for depth, part in enumerate(attr.split(".")):
            if isinstance(obj, Model):
                # file.py:Iris.predict: a target names the model, not its method.
                raise ConfigurationError(
                    f"{target}: a target names a model, and '{attr.split('.')[0]}' is one: use {location}:"
                    f"{attr.split('.')[0]}"
                )
            if not hasattr(obj, part):
                known = ", ".join(_names(module, models)) or "none"
                whose = f"module {location}" if depth == 0 else f"'{'.'.join(attr.split('.')[:depth])}'"
                raise ConfigurationError(f"{target}: {whose} has no '{part}' (its models: {known})")
            obj = getattr(obj, part)
        found = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        for item in found:
            if not isinstance(item, Model):
                kind = "a class" if isinstance(item, type) else "a function" if callable(item) else None
                raise ConfigurationError(
                    f"{target}: '{attr}' is {kind} not decorated with @model(...)"
                    if kind
                    else f"{target}: '{attr}' is not a model made with @model, got {type(item).__name__}"
                )
        return found  # type: ignore[return-value]
    if not models:
        raise ConfigurationError(f"{target}: {location} defines no @model")
    return models


def _names(module: ModuleType, models: list[Model]) -> list[str]:
    return [name for name, value in vars(module).items() if any(value is m for m in models)]


#: Import names whose distribution on PyPI is named otherwise, for the install hint.
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "google.protobuf": "protobuf",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "PyJWT",
    "magic": "python-magic",
}
#: Where a model file's module goes in sys.modules: a name of its own, so that a model file
#: named like a standard module (random.py, types.py) neither shadows it nor is shadowed.
MODULE_PREFIX = "_omi_model_"


def _import(location: str, target: str) -> ModuleType:
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location).resolve()
        if not path.is_file():
            raise ConfigurationError(f"{target}: no such file {location}")
        name = MODULE_PREFIX + "".join(c if c.isalnum() else "_" for c in path.stem)
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__file__", None) == str(path):
            return existing
        # The model's folder goes on sys.path so the model can import the files beside it
        # (appended: a model file beside it must not shadow a standard or installed module).
        if str(path.parent) not in sys.path:
            sys.path.append(str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"{target}: cannot import {location}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(name, None)
            raise _import_failed(location, path, exc) from exc
        return module
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        if exc.name and location.startswith(exc.name):
            raise ConfigurationError(f"{target}: no module named '{location}'") from None
        raise _import_failed(location, None, exc) from exc
    except Exception as exc:
        raise _import_failed(location, None, exc) from exc


class ModelImportError(ConfigurationError):
    """A model's module failed to import; the message names the file, the line and the fix."""


def _import_failed(location: str, path: Path | None, exc: BaseException) -> ModelImportError:
    """One line for what went wrong while importing a model's module, where, and what to do."""
    if isinstance(exc, SyntaxError):
        where = f"{location}:{exc.lineno}" if exc.lineno else location
        return ModelImportError(f"{where}: SyntaxError: {exc.msg}")
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name
        hint = _DISTRIBUTIONS.get(top) or _DISTRIBUTIONS.get(top.split(".")[0]) or top.split(".")[0]
        return ModelImportError(f"{location} imports '{top}', which is not installed: pip install {hint}")
    line = _line_in(path, exc) if path is not None else None
    where = f"{location}:{line}" if line else location
    if isinstance(exc, OmiError):  # a declaration the decorator refused: its message says why
        return ModelImportError(f"{where}: {exc.message}")
    text = str(exc)
    return ModelImportError(f"{where}: {type(exc).__name__}{': ' + text if text else ''}")


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of ``path`` where ``exc`` was raised (the innermost frame in that file)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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


def copy_source(path: Path, dest: Path, ignore: tuple[str, ...] = BUILD_IGNORE) -> None:
    """Copy a model's file or folder to ``dest`` for a build, leaving out ``ignore`` (Python's caches)."""
    if path.is_dir():
        shutil.copytree(path, dest, ignore=shutil.ignore_patterns(*ignore))
    else:
        shutil.copy2(path, dest)
