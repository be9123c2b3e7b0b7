"""``omi build knative TARGET... --out DIR --image IMAGE``: a Knative/KServe deployment.

Writes into ``DIR``::

    service.yaml            a serving.knative.dev/v1 Service
    inferenceservice.yaml   a serving.kserve.io/v1beta1 InferenceService (custom predictor, v2)
    Containerfile           the image both run; DIR is its build context
    model/                  the files that define the models (and any --include)
    wheels/                 the --wheel files, installed in the image ahead of PyPI

The Service is checked against Knative's Service CRD (strict) and its admission rules, and the
InferenceService's pod against the same admission rules, before anything is written: an invalid
deployment is refused with every problem listed.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import yaml

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError
from omi_adapters.targets import BUILD_IGNORE, copy_source, model_source
from omi_knative import validate
from omi_knative.containerfile import DEFAULT_BASE, MARKER, ImageSpec, render
from omi_knative.manifests import (
    Deployment,
    inference_service,
    knative_service,
    request_timeout,
    serve_limits,
    service_name,
)

__all__ = ["add_arguments", "build", "write"]

MODEL_DIR = "model"
WHEEL_DIR = "wheels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``omi build knative``."""
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="the folder to write (the image's build context)"
    )
    parser.add_argument(
        "--image", required=True, help="the image reference the manifests deploy, such as registry/name:tag"
    )
    parser.add_argument(
        "--protocol", choices=["rest", "grpc"], default="rest", help="OIP REST (port http1) or OIP gRPC (port h2c)"
    )
    parser.add_argument("--name", help="the Service's name (default: made from the first model's name)")
    parser.add_argument("--port", type=int, default=8080, help="the container port (default 8080)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="containerConcurrency: requests per container (0: no limit); default 10",
    )
    parser.add_argument(
        "--target", type=float, default=None, help="autoscaling target concurrency (default: --concurrency)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="omi serve --workers in the container: each loads the models, so the pod's memory and CPU "
        "requests are the models' times this; --concurrency stays the pod's, all workers together; default 1",
    )
    parser.add_argument("--min-scale", type=int, default=0, help="fewest replicas (0 scales to zero); default 0")
    parser.add_argument("--max-scale", type=int, default=10, help="most replicas (0: no limit); default 10")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="an env var of the container (repeatable)"
    )
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"the base image with python3 (default {DEFAULT_BASE})")
    parser.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="REQ",
        help="another pip requirement of the model (repeatable)",
    )
    parser.add_argument(
        "--wheel",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a wheel to install from the build context (repeatable)",
    )
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="a file or folder the model needs, copied beside it",
    )
    parser.add_argument(
        "--crd", type=Path, default=None, help="validate against this Service CRD instead of the shipped v1.23 one"
    )


def build(models: list[Model], args: argparse.Namespace) -> int:
    """Validate and write the deployment of ``models``; returns the exit code."""
    env = []
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--env {item!r}: expected NAME=VALUE")
        env.append((key, value))
    deployment = Deployment(
        name=args.name or service_name(models),
        image=args.image,
        protocol=args.protocol,
        port=args.port,
        concurrency=args.concurrency,
        target=args.target,
        min_scale=args.min_scale,
        max_scale=args.max_scale,
        env=tuple(env),
        workers=args.workers,
    )
    if not args.wheel:
        # Installed from a checkout, not an index: the image cannot pip install this version from
        # PyPI, so it gets the checkout's own wheel.
        local = local_wheel()
        if local is not None:
            print(
                f"omi-adapters {_version()} is installed from a checkout: its wheel goes into the image ({local.name})"
            )
            args.wheel = [local]
    for path in [*args.wheel, *args.include]:
        if not path.exists():
            raise ConfigurationError(f"{path}: no such file or folder")
    for wheel in args.wheel:
        if wheel.suffix != ".whl" or not wheel.is_file():
            raise ConfigurationError(f"--wheel {wheel}: not a wheel file (*.whl)")
    written = write(
        models,
        deployment,
        args.out,
        base=args.base,
        requirements=args.requirement,
        wheels=args.wheel,
        include=args.include,
        crd=args.crd,
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def write(
    models: list[Model],
    deployment: Deployment,
    out: Path,
    *,
    base: str = DEFAULT_BASE,
    requirements: list[str] | None = None,
    wheels: list[Path] | None = None,
    include: list[Path] | None = None,
    crd: Path | None = None,
) -> list[Path]:
    """Build, check, then write everything; returns the paths written."""
    service = knative_service(models, deployment)
    isvc = inference_service(models, deployment)
    validate.validate_service(service, validate.load_schema(crd))
    problems = validate.pod_errors(_predictor_pod(isvc), "spec.predictor")
    if problems:
        raise ConfigurationError("invalid InferenceService:\n  " + "\n  ".join(problems))

    sources, targets = _sources(models)
    # A REST image parses JSON bodies: simdjson (the fastjson extra) reads their large float arrays.
    extra = "grpc" if deployment.protocol == "grpc" else "rest,fastjson"
    spec = ImageSpec(
        targets=targets,
        model_names=[m.name for m in models],
        requirements=[f"omi-adapters[{extra}]=={_version()}", *(requirements or [])],
        protocol=deployment.protocol,
        port=deployment.port,
        base=base,
        wheels=bool(wheels),
        graceful_timeout=request_timeout(models),
        extra_args=serve_limits(models, deployment.workers),
    )
    out = Path(out)
    _check_ours(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = [_dump(out / "service.yaml", service), _dump(out / "inferenceservice.yaml", isvc)]
        (out / "Containerfile").write_text(render(spec))
        written.append(out / "Containerfile")
        written.append(_fill(out / MODEL_DIR, [*sources, *(include or [])]))
        if wheels:
            written.append(_fill(out / WHEEL_DIR, wheels))
        elif (out / WHEEL_DIR).exists():
            shutil.rmtree(out / WHEEL_DIR)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {out}: {exc.filename or ''} {exc.strerror or exc}".strip()) from None
    return written


def _check_ours(out: Path) -> None:
    """Refuse to write into a folder that holds files this command did not write."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file, not a folder")
    containerfile = out / "Containerfile"
    try:
        ours = containerfile.read_text().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        ours = False
    if any(out.iterdir()) and not ours:
        raise ConfigurationError(f"{out} is not empty and was not written by `omi build knative`; choose another --out")


def _predictor_pod(isvc: dict[str, Any]) -> dict[str, Any]:
    predictor = isvc["spec"]["predictor"]
    return {"containers": predictor["containers"], "containerConcurrency": predictor["containerConcurrency"],
            "timeoutSeconds": predictor["timeout"]}  # fmt: skip


def _sources(models: list[Model]) -> tuple[list[Path], list[str]]:
    """The files to copy into ``model/`` and the ``omi serve`` targets that load them there."""
    files: dict[str, Path] = {}
    targets: list[str] = []
    for model in models:
        source = model_source(model)
        if source.file is None:
            # A module of a package: --requirement or --wheel must install it in the image.
            targets.append(f"{source.module}:{source.attr}")
            continue
        path = source.file
        if files.setdefault(path.name, path) != path:
            raise ConfigurationError(
                f"{files[path.name]} and {path} would both be model/{path.name} in the image; rename one"
            )
        targets.append(f"{path.name}:{source.attr}")
    return list(files.values()), targets


def _fill(folder: Path, paths: list[Path]) -> Path:
    """Make ``folder`` hold exactly copies of ``paths`` (a rerun leaves nothing stale)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for path in paths:
        copy_source(path, folder / path.name)
    return folder


def _dump(path: Path, manifest: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False))
    return path


@functools.cache
def local_wheel() -> Path | None:
    """A wheel of omi-adapters built from the folder it is installed from, when that is a checkout."""
    source = _checkout()
    if source is None:
        return None
    # Built from a copy: setuptools writes build/ and *.egg-info into the folder it builds, and an
    # egg-info in a checkout would then hide the installed metadata from Python run there.
    folder = Path(tempfile.mkdtemp(prefix="omi-wheel-"))
    tree = folder / "src"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (source / name).is_file():
            shutil.copy2(source / name, tree / name)
    shutil.copytree(source / "omi_adapters", tree / "omi_adapters", ignore=shutil.ignore_patterns(*BUILD_IGNORE))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder), str(tree)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wheels = sorted(folder.glob("omi_adapters-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ConfigurationError(
            f"cannot build the wheel of omi-adapters from {source} for the image (give one with --wheel): "
            + (done.stderr.strip().splitlines() or ["pip wheel failed"])[-1]
        )
    return wheels[0]


def _checkout() -> Path | None:
    """The folder omi-adapters is installed from (pip's ``direct_url.json``), if it is a local one."""
    for distribution in importlib_metadata.distributions():
        if distribution.metadata["Name"] != "omi-adapters":
            continue
        text = distribution.read_text("direct_url.json")
        url = json.loads(text).get("url", "") if text else ""
        if url.startswith("file://"):
            source = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
            if (source / "pyproject.toml").is_file() and (source / "omi_adapters").is_dir():
                return source
    return None


def _version() -> str:
    try:
        return importlib_metadata.version("omi-adapters")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        from omi_adapters import __version__

        return str(__version__)
