"""``omi build triton TARGET... --out REPO``: write a Triton model repository.

For each model (Triton's Python backend README, "Usage")::

    REPO/<name>/config.pbtxt          Triton's ModelConfig, in protobuf text format
    REPO/<name>/<version>/model.py    a two-line shim: the TritonPythonModel of omi_triton
    REPO/<name>/<version>/code/...    the file that defines the model (and any --include)

so the repository carries the user's code; the model environment Triton runs it in needs
omi-adapters-triton (and numpy<2, see :mod:`omi_triton.server`). Each model folder is written
beside the old one and swapped in, so a rerun replaces it whole and leaves no half-written
model; folders not written by this command are never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError
from omi_adapters.model_config import CODE_DIR, labels_filename, model_config, repository_target
from omi_adapters.targets import copy_source
from omi_triton import config as triton_config

__all__ = ["SHIM", "add_arguments", "build", "write_model"]

#: The ``model.py`` every version folder gets. The stub imports it once for auto-completion
#: and once per instance, so it imports nothing heavy itself.
SHIM = '''"""Triton Python-backend entry point written by `omi build triton`; rebuild instead of editing."""

from omi_triton.backend import TritonPythonModel  # noqa: F401
'''


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``omi build triton``."""
    parser.add_argument("--out", required=True, type=Path, metavar="REPO", help="the model repository to write")
    parser.add_argument("--instances", type=int, default=1, help="model instances (processes) per model; default 1")
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        metavar="US",
        help="dynamic batching: how long a request may wait to fill a batch (batching models only); "
        "default: the model's max_queue_delay",
    )
    parser.add_argument(
        "--include",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a file or folder the model needs at run time, copied beside its code (repeatable)",
    )


def build(models: list[Model], args: argparse.Namespace) -> int:
    """Write every model into ``args.out``; returns the exit code."""
    if args.instances < 1:
        raise ConfigurationError(f"--instances must be at least 1, got {args.instances}")
    if args.max_queue_delay_us is not None and args.max_queue_delay_us < 0:
        raise ConfigurationError(f"--max-queue-delay-us must be >= 0, got {args.max_queue_delay_us}")
    names: dict[str, list[Model]] = {}
    for model in models:
        versions = names.setdefault(model.name, [])
        if any(v.version == model.version for v in versions):
            raise ConfigurationError(f"model '{model.name}' version {model.version} is given twice")
        versions.append(model)
    for include in args.include:
        if not include.exists():
            raise ConfigurationError(f"--include {include}: no such file or folder")
    for versions in names.values():
        folder = write_versions(
            versions,
            args.out,
            instances=args.instances,
            max_queue_delay_us=args.max_queue_delay_us,
            include=args.include,
        )
        print(
            f"wrote {folder}" + (f" (versions {', '.join(m.version for m in versions)})" if len(versions) > 1 else "")
        )
    return 0


def write_model(
    model: Model,
    repository: Path,
    *,
    instances: int = 1,
    max_queue_delay_us: int | None = None,
    include: list[Path] | None = None,
) -> Path:
    """Write one model's folder into ``repository``; returns the folder."""
    return write_versions(
        [model], repository, instances=instances, max_queue_delay_us=max_queue_delay_us, include=include
    )


def write_versions(
    models: list[Model],
    repository: Path,
    *,
    instances: int = 1,
    max_queue_delay_us: int | None = None,
    include: list[Path] | None = None,
) -> Path:
    """Write the versions of one model into its folder of ``repository``, a numbered folder each.

    Triton keeps one ``config.pbtxt`` for all the versions of a model: their tensors and batching
    must agree. Each version's code travels in its own folder and ``config.pbtxt`` names each
    one's target (``omi_target_<version>``). Returns the model's folder.
    """
    repository = Path(repository)
    models = sorted(models, key=lambda m: triton_config.integer_version(m))
    sources = {m.version: repository_target(m) for m in models}
    config = triton_config.to_message(
        model_config(
            models,
            targets={version: target for version, (_, target) in sources.items()},
            instances=instances,
            max_queue_delay_us=max_queue_delay_us,
        )
    )
    labelled = [spec for spec in models[-1].outputs if spec.labels]
    name = models[0].name
    folder = repository / name
    try:
        repository.mkdir(parents=True, exist_ok=True)
        _check_ours(folder)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; a repository is read by the server's user
            (staging / "config.pbtxt").write_text(triton_config.to_text(config))
            for spec in labelled:
                # One label per line, the class index being the line's (Triton's label_filename).
                (staging / labels_filename(spec)).write_text("".join(f"{label}\n" for label in spec.labels or ()))
            for model in models:
                source = sources[model.version][0]
                version = staging / str(triton_config.integer_version(model))
                version.mkdir()
                (version / "model.py").write_text(SHIM)
                code = version / CODE_DIR
                code.mkdir()
                if source is not None:
                    shutil.copy2(source, code / source.name)
                for path in include or []:
                    copy_source(path, code / path.name)
            _swap(staging, folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    except OSError as exc:
        where = exc.filename or repository
        raise ConfigurationError(
            f"cannot write the Triton repository {repository}: {where}: {exc.strerror or exc}"
        ) from None
    return folder


def _check_ours(folder: Path) -> None:
    if not folder.exists():
        return
    config = folder / "config.pbtxt"
    try:
        message = triton_config.parse(config.read_text())
        ours = triton_config.TARGET_PARAMETER in message.parameters
    except Exception:  # noqa: BLE001 - an unreadable or foreign config is "not ours"
        ours = False
    if not ours:
        raise ConfigurationError(
            f"{folder} exists and was not written by `omi build triton`; remove it or choose another --out"
        )


def _swap(staging: Path, folder: Path) -> None:
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
        folder.rename(old)
    try:
        staging.rename(folder)
    except OSError:
        if old is not None:
            old.rename(folder)  # a failed rebuild leaves the previous model folder in place
        raise
    if old is not None:
        shutil.rmtree(old)


def _describe(model: Model) -> str:
    module = getattr(model.target, "__module__", "?")
    return f"{module}.{getattr(model.target, '__name__', model.name)}"
