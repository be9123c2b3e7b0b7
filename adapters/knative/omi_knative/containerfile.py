"""The Containerfile of a model image: install omi-adapters and the model, run ``omi serve``.

The image follows the OMI container spec v1.1 (its container specification): the labels
``ml.openmodel.interfaces``, ``ml.openmodel.protocols``, ``ml.openmodel.port`` and
``ml.openml.model_name`` (sic), and the env vars ``INTERFACE``, ``HTTP_PORT``, ``PROTOCOL`` and
``MODEL_NAME`` that mirror them. It keeps Knative's runtime contract (Knative's
"Runtime contract" page): the server listens on ``$PORT`` when Knative sets it, else on ``$HTTP_PORT``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["APP_DIR", "DEFAULT_BASE", "MARKER", "ImageSpec", "render"]

#: A Debian-based Python image; any base with ``python3`` (3.11+) and its ``venv`` module works.
DEFAULT_BASE = "docker.io/library/python:3.11-slim-bookworm"
APP_DIR = "/opt/omi"
#: A fixed non-root user: Knative and KServe run containers without root where they can.
USER = "65532:65532"
#: The first line of every Containerfile written here: a rerun may replace what it finds.
MARKER = "# Written by `omi build knative`; rebuild instead of editing."


@dataclass(frozen=True)
class ImageSpec:
    """What goes into the image and how it is started."""

    targets: Sequence[str]
    model_names: Sequence[str]
    requirements: Sequence[str]
    protocol: str = "rest"
    port: int = 8080
    base: str = DEFAULT_BASE
    wheels: bool = False
    graceful_timeout: int = 30
    extra_args: Sequence[str] = field(default_factory=tuple)


def render(spec: ImageSpec) -> str:
    """The Containerfile text (its build context is the folder ``omi build knative`` writes)."""
    venv = f"{APP_DIR}/venv"
    pip = [f"{venv}/bin/pip", "install"]
    if spec.wheels:
        pip += ["--find-links", f"{APP_DIR}/wheels"]
    pip += list(spec.requirements)
    # The OIP front end of the chosen protocol takes the one port Knative routes to.
    port_flag = "--http-port" if spec.protocol == "rest" else "--grpc-port"
    serve = [
        "exec",
        f"{venv}/bin/omi",
        "serve",
        *spec.targets,
        "--protocols",
        "rest" if spec.protocol == "rest" else "grpc",
    ]
    serve_line = " ".join(shlex.quote(part) for part in serve)
    serve_line += f' {port_flag} "${{PORT:-${{HTTP_PORT:-{spec.port}}}}}"'
    serve_line += f" --graceful-timeout {spec.graceful_timeout}"
    if spec.extra_args:
        serve_line += " " + " ".join(shlex.quote(a) for a in spec.extra_args)
    labels = {
        "ml.openmodel.interfaces": json.dumps(["kfserving"]),
        "ml.openmodel.protocols": json.dumps([["v2"]]),
        "ml.openmodel.port": str(spec.port),
        "ml.openml.model_name": ",".join(spec.model_names),
    }
    env = {
        "INTERFACE": "kfserving",
        "HTTP_PORT": str(spec.port),
        "PROTOCOL": "v2",
        "MODEL_NAME": ",".join(spec.model_names),
    }
    lines = [
        MARKER,
        "# Build from this folder: buildah bud -t IMAGE .   (or: docker build -t IMAGE -f Containerfile .)",
        f"FROM {spec.base}",
        "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
    ]
    if spec.wheels:
        lines.append(f"COPY wheels/ {APP_DIR}/wheels/")
    lines += [
        # A virtual environment works the same on python:*-slim and on Debian's python3
        # (whose system site-packages is externally managed, PEP 668).
        f"RUN --mount=type=cache,target=/root/.cache/pip python3 -m venv {venv} \\",
        "    && " + " ".join(shlex.quote(part) for part in pip),
        f"COPY model/ {APP_DIR}/model/",
        f"WORKDIR {APP_DIR}/model",
        "ENV " + " ".join(f"{key}={json.dumps(value)}" for key, value in env.items()),
        "LABEL " + " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in labels.items()),
        f"EXPOSE {spec.port}",
        f"USER {USER}",
        # A shell reads $PORT (Knative) or $HTTP_PORT (OMI); exec makes omi PID 1, so it gets SIGTERM.
        "CMD " + json.dumps(["/bin/sh", "-c", serve_line]),
        "",
    ]
    return "\n".join(lines)
