"""``omi build lambda TARGET... --out DIR``: a deployable AWS Lambda bundle.

The bundle::

    DIR/
      function/            the function's code (the template's CodeUri, the image's task root)
        omi_lambda/        the handler package (handler: omi_lambda.handler)
        omi_adapters/      the core, without its gRPC front ends (a Lambda carries no grpc)
        <model code>       each TARGET's module or package, and every --include
        requirements.txt   the third-party dependencies
        (dependencies)     with --install-deps: installed for Lambda's platform
      template.yaml        AWS SAM: the function, an HTTP API event and a Function URL
      Containerfile        the same function as a Lambda container image
      README.md            how to install the dependencies and deploy

Lambda's Python runtimes run on Amazon Linux: python3.12 and later on Amazon Linux 2023
(glibc 2.34), earlier ones on Amazon Linux 2 (glibc 2.26). ``--install-deps`` asks pip for
wheels of exactly that platform, whatever machine runs the build.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from omi_adapters.contract import Model
from omi_adapters.errors import ConfigurationError
from omi_adapters.targets import BUILD_IGNORE, copy_source
from omi_lambda import sam

__all__ = ["PYTHONS", "add_arguments", "build", "installed_pins", "pip_install_command", "runtime_requirements"]

#: Lambda's Python runtimes -> the glibc minor version of their Amazon Linux.
PYTHONS = {"3.10": 26, "3.11": 26, "3.12": 34, "3.13": 34, "3.14": 34}
_PIP_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
#: Distributions copied into the bundle as source, so never installed from an index.
_VENDORED = {"omi-adapters", "omi-adapters-lambda"}
#: Needed to run ``omi serve`` or ``omi build``, not inside Lambda.
_NOT_AT_RUNTIME = {"uvicorn", "pyyaml", "packaging"}
#: Parts of the core a Lambda bundle leaves out: the gRPC front ends and their generated code.
#: The gRPC front ends and their generated code: a Lambda bundle carries no grpc.
_CORE_LEFT_OUT = (*BUILD_IGNORE, "protos", "grpc_*.py")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``omi build lambda``."""
    parser.add_argument("--out", required=True, type=Path, help="the bundle's folder (new or empty)")
    parser.add_argument("--python", choices=sorted(PYTHONS), default="3.12", help="Lambda runtime (default 3.12)")
    parser.add_argument("--arch", choices=sorted(_PIP_ARCH), default="x86_64", help="instruction set (default x86_64)")
    parser.add_argument("--memory", type=int, default=1024, help="memory in MB, 128 to 10240 (default 1024)")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per invocation, 1 to 900 (default 30)")
    parser.add_argument(
        "--function-url-auth", choices=["AWS_IAM", "NONE"], default="AWS_IAM",
        help="who may call the Function URL: signed IAM requests (default) or anyone",
    )  # fmt: skip
    parser.add_argument("--snapstart", action="store_true", help="enable SnapStart (python3.12 and later)")
    parser.add_argument(
        "--include", action="append", type=Path, default=[], metavar="PATH",
        help="a file or folder the model needs, copied beside its code (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--requirement", action="append", default=[], metavar="REQ",
        help="an extra pip requirement of the model, such as scikit-learn>=1.5 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--install-deps", action="store_true",
        help="install the dependencies into the bundle, for Lambda's platform (needs pip and an index)",
    )  # fmt: skip


def build(models: Sequence[Model], args: argparse.Namespace) -> int:
    """Write the bundle; returns the exit code (errors are raised as ConfigurationError)."""
    _check(args)
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigurationError(f"--out {out}: exists and is not an empty folder")
    existed = out.exists()
    try:
        _write(models, args, out)
    except BaseException as exc:
        # Leave --out as it was found: a half-written bundle would refuse the rerun.
        for child in out.iterdir() if existed else [out]:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            elif child.exists() or child.is_symlink():
                child.unlink()
        if isinstance(exc, OSError):
            raise ConfigurationError(
                f"cannot write the bundle {out}: {exc.filename or out}: {exc.strerror or exc}"
            ) from None
        if isinstance(exc, subprocess.CalledProcessError):
            raise ConfigurationError(
                f"installing the dependencies for python{args.python} ({args.arch}) failed: pip exited with "
                f"{exc.returncode} (its output is above)"
            ) from None
        raise
    return 0


def _write(models: Sequence[Model], args: argparse.Namespace, out: Path) -> None:
    code = out / sam.CODE_DIR
    code.mkdir(parents=True, exist_ok=True)

    entries = [_copy_target(target, code) for target in args.targets]
    for path in args.include:
        _copy(path, code / path.name, f"--include {path}")
    _copy_package("omi_adapters", code, ignore=_CORE_LEFT_OUT)
    _copy_package("omi_lambda", code, ignore=BUILD_IGNORE)
    requirements = runtime_requirements() + list(args.requirement)
    (code / "requirements.txt").write_text("\n".join(requirements) + "\n")

    names = ", ".join(dict.fromkeys(f"{m.name} v{m.version}" for m in models))
    spec = sam.FunctionSpec(
        description=f"omi-adapters: {names} over the Open Inference Protocol",
        omi_model=",".join(entries),
        python=args.python,
        architecture=args.arch,
        memory=args.memory,
        timeout=args.timeout,
        url_auth=args.function_url_auth,
        snapstart=args.snapstart,
    )
    (out / "template.yaml").write_text(sam.template_yaml(spec))
    (out / "Containerfile").write_text(sam.containerfile(spec))
    shown = pip_install_command(code.relative_to(out), args.python, args.arch, pip=["pip"])
    (out / "README.md").write_text(_readme(spec, " ".join(shown), code.relative_to(out)))
    if args.install_deps:
        print(
            f"installing {len(requirements)} requirements for python{args.python} ({args.arch}) into {code}: "
            + ", ".join(requirements),
            flush=True,
        )
        _install(code, requirements, args.python, args.arch)
        print(f"installed: {', '.join(_installed(code))}; the bundle is {_size(code) / 1e6:.1f} MB", flush=True)
    print(f"wrote {out}: handler {sam.HANDLER}, OMI_MODEL={spec.omi_model}, runtime python{args.python}")
    if not args.install_deps:
        print(f"dependencies are listed in {code / 'requirements.txt'}; see {out / 'README.md'} to install them")


def _check(args: argparse.Namespace) -> None:
    if not 128 <= args.memory <= 10240:
        raise ConfigurationError(f"--memory must be 128 to 10240 MB, got {args.memory}")
    if not 1 <= args.timeout <= 900:
        raise ConfigurationError(f"--timeout must be 1 to 900 seconds, got {args.timeout}")
    if args.snapstart and PYTHONS[args.python] < 34:
        raise ConfigurationError(f"--snapstart needs python 3.12 or later, got {args.python}")


def _copy_target(target: str, code: Path) -> str:
    """Copy a TARGET's code into the bundle; returns its entry for ``OMI_MODEL``."""
    location, sep, attr = target.partition(":")
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location)
        # The runtime imports the file as a top-level module named after it, as `omi serve` does.
        _copy(path, code / path.name, target)
        module = path.stem
    else:
        module = location
        top = location.split(".")[0]
        spec = importlib.util.find_spec(top)
        if spec is None or spec.origin is None and not spec.submodule_search_locations:
            raise ConfigurationError(f"{target}: cannot find module '{top}'")
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
            _copy(source, code / source.name, target)
        else:
            source = Path(str(spec.origin))
            _copy(source, code / source.name, target)
    return f"{module}{sep}{attr}"


def _copy(source: Path, dest: Path, what: str) -> None:
    if not source.exists():
        raise ConfigurationError(f"{what}: no such file or folder {source}")
    if dest.exists():
        if dest.is_file() and source.is_file() and dest.read_bytes() == source.read_bytes():
            return  # the same file named by two targets
        raise ConfigurationError(f"{what}: the bundle already has a '{dest.name}' from another target")
    if dest.name in ("omi_adapters", "omi_lambda", "requirements.txt"):
        raise ConfigurationError(f"{what}: '{dest.name}' would shadow a part of the bundle; rename it")
    copy_source(source, dest)


def _copy_package(name: str, code: Path, ignore: tuple[str, ...]) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"cannot find the package '{name}' to copy into the bundle")
    source = Path(next(iter(spec.submodule_search_locations)))
    copy_source(source, code / name, ignore)


def runtime_requirements() -> list[str]:
    """The third-party requirements of the handler: those of omi-adapters[rest] and this adapter.

    Read from the installed distributions' metadata, so they follow the pyproject files;
    the vendored packages themselves and what only servers or builds need are left out.
    """
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    for distribution, extra in (("omi-adapters", "rest"), ("omi-adapters-lambda", "")):
        try:
            lines = importlib.metadata.requires(distribution) or []
        except importlib.metadata.PackageNotFoundError:
            raise ConfigurationError(f"{distribution} is not installed; it is what the bundle is made from") from None
        for line in lines:
            requirement = Requirement(line)
            name = requirement.name.lower()
            if name in _VENDORED or name in _NOT_AT_RUNTIME:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
                continue
            requirement.marker = None
            found.setdefault(name, str(requirement))
    return sorted(found.values())


def installed_pins(requirements: Sequence[str]) -> list[str]:
    """``name==version`` of each requirement and of what it requires, as installed here.

    These are the versions the model was served and tested with (the project's pinned ones in
    an environment ``make`` set up): the bundle gets them where Lambda's platform has them.
    """
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in pins:
            continue
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins[name] = f"{name}=={distribution.version}"
        for line in distribution.requires or []:
            dependency = Requirement(line)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                todo.append(dependency)
    return sorted(pins.values())


def pip_install_command(
    code: Path, python: str, arch: str, pip: Sequence[str] | None = None, *, quiet: bool = True
) -> list[str]:
    """pip, asked for wheels of Lambda's platform: CPython ``python``, manylinux up to its glibc.

    pip does not widen a ``manylinux_2_X`` platform to older glibc versions by itself (it does
    so for ``manylinux2014`` only), so every compatible one is listed.
    """
    glibc = PYTHONS[python]
    machine = _PIP_ARCH[arch]
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc, 16, -1)] + [f"manylinux2014_{machine}"]
    command = [*(pip or (sys.executable, "-m", "pip")), "install", "--disable-pip-version-check"]
    # Quiet in the command the README shows; the build itself shows pip's progress, line by line.
    command += ["--quiet"] if quiet else ["--progress-bar", "off"]
    for platform in platforms:
        command += ["--platform", platform]
    command += [
        "--implementation", "cp", "--python-version", python, "--only-binary=:all:",
        "--target", str(code), "-r", str(code / "requirements.txt"),
    ]  # fmt: skip
    return command


def _install(code: Path, requirements: Sequence[str], python: str, arch: str) -> None:
    """pip into the bundle: the versions installed here where Lambda's platform has wheels of them."""
    command = pip_install_command(code, python, arch, quiet=False)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="omi-pins-") as pins:
        pins.write("\n".join(installed_pins(requirements)) + "\n")
        pins.flush()
        if subprocess.run([*command, "-c", pins.name], check=False).returncode == 0:
            return
    # An older runtime's glibc (Amazon Linux 2) lacks wheels of some recent versions.
    print(
        f"the versions installed here are not all available for python{python} ({arch}) on Lambda; "
        "installing the newest that are",
        flush=True,
    )
    subprocess.run(command, check=True)


def _installed(code: Path) -> list[str]:
    """``name version`` of every distribution pip installed into the bundle."""
    found = []
    for info in sorted(code.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        found.append(f"{name} {version}")
    return found


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _readme(spec: sam.FunctionSpec, install: str, code: Path) -> str:
    return f"""# AWS Lambda bundle: {spec.description}

Handler `{sam.HANDLER}`, runtime `python{spec.python}` ({spec.architecture}), `OMI_MODEL={spec.omi_model}`.

## 1. Dependencies

`{code}/requirements.txt` lists them. Unless the bundle was built with `--install-deps`, install
them into `{code}/` for Lambda's platform (Amazon Linux, CPython {spec.python}) from any machine:

```sh
{install}
```

(`sam build --use-container` does the same from `template.yaml`.)

## 2. Deploy

- Zip: `sam deploy --guided` (the template's function has an HTTP API event and a Function URL).
- Container image: `Containerfile` builds on `public.ecr.aws/lambda/python:{spec.python}`.

## 3. Call it

- HTTP (HTTP API, Function URL, ALB, REST API): the Open Inference Protocol REST API, such as
  `POST /v2/models/<name>/infer`, JSON or the binary tensor extension (base64 through API Gateway).
- Direct: invoke with an OIP inference request as the event (`{{"model_name": ..., "inputs": [...]}}`);
  the answer is the OIP response, or `{{"error": ..., "status_code": ...}}`.
- Every answer says whether it was a cold start: the `x-omi-cold-start` header, or the
  `cold_start` parameter of a direct response. Requests and responses over 6 MB get a 413.
"""
