"""Install and run a real ``tritonserver`` on this machine, without a container.

The PyPI wheel ``nvidia-pytriton`` bundles a ``tritonserver`` binary, the Python backend and its
stubs for several Python versions (the nvidia-pytriton wheel carries all of them). :func:`install` puts
it in a folder once and prepares the *model environment*: the virtual environment whose
``bin/`` comes first on ``PATH`` when tritonserver starts is the one the Python-backend stub
imports packages from. That environment needs ``numpy<2``: the stub of tritonserver 2.51 reads
arrays with numpy 1's C layout and silently gets wrong data under numpy 2 (checked here).

:class:`TritonServer` starts the binary on free loopback ports and waits until it is ready.
``python -m omi_triton.server REPO`` runs one in the foreground for local use.

Only the standard library is used here, so this module also runs from a bare interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

__all__ = ["MODEL_ENV_REQUIREMENTS", "WHEEL", "Installation", "TritonServer", "existing", "install", "main"]

#: The wheel that carries tritonserver 2.51.0 and runs on this platform (manylinux_2_35, x86_64).
WHEEL = "nvidia-pytriton==0.7.0"
#: What the model environment always needs; see the module docstring for numpy.
MODEL_ENV_REQUIREMENTS: tuple[str, ...] = ("numpy>=1.26,<2",)
_RECORD = "installation.json"


@dataclass(frozen=True)
class Installation:
    """A tritonserver unpacked from the wheel, and the Python environment its models run in."""

    home: Path
    python_env: Path

    @property
    def root(self) -> Path:
        """The ``tritonserver`` folder of the wheel (``bin/``, ``backends/``, ``caches/``)."""
        return self.home / "wheel" / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        """The ``tritonserver`` executable."""
        return self.root / "bin" / "tritonserver"

    def command(self, repository: Path, http_port: int, grpc_port: int, metrics_port: int) -> list[str]:
        """The command line that serves ``repository`` on the given ports."""
        return [
            str(self.binary),
            f"--model-repository={repository}",
            f"--backend-directory={self.root / 'backends'}",
            f"--cache-directory={self.root / 'caches'}",
            f"--http-port={http_port}",
            f"--grpc-port={grpc_port}",
            f"--metrics-port={metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-on-error=false",  # one broken model must not take the others down
            "--exit-timeout-secs=10",  # on SIGTERM, wait this long for in-flight work, not 30 s
        ]

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment: the model environment's ``bin/`` first on ``PATH``."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.python_env / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.python_env)
        env.pop("PYTHONHOME", None)
        return env

    def to_dict(self) -> dict[str, str]:
        """What the installation record (``installation.json``) holds."""
        return {
            "tritonserver": str(self.binary),
            "backend_directory": str(self.root / "backends"),
            "cache_directory": str(self.root / "caches"),
            "python_env": str(self.python_env),
            "PATH_prefix": str(self.python_env / "bin"),
        }


def install(
    home: Path,
    *,
    python: str = sys.executable,
    requirements: Sequence[str] = (),
    paths: Sequence[Path] = (),
    log: bool = True,
) -> Installation:
    """Install tritonserver and a model environment under ``home``, once.

    Idempotent and safe to call from concurrent processes (a file lock serialises them); a
    finished installation is recognised by its record file and reused as is.

    Args:
        home: the folder to install into (created).
        python: the interpreter whose version picks the backend stub and makes the model
            environment; it must have a shared ``libpython`` of the same minor version.
        requirements: pip requirement lines the models need besides numpy.
        paths: folders put on the model environment's ``sys.path`` (a ``.pth`` file), such as
            a source checkout of omi-adapters.
        log: print what is done to stderr.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    installation = Installation(home=home, python_env=home / "env")
    version = _version_of(python)
    wanted_requirements = [*MODEL_ENV_REQUIREMENTS, *requirements]
    wanted_paths = [str(Path(p).resolve()) for p in paths]
    wanted = {"wheel": WHEEL, "requirements": wanted_requirements, "paths": wanted_paths, "python": version}
    with _locked(home / ".lock"):
        record = home / _RECORD
        if record.exists():
            try:
                if json.loads(record.read_text()).get("wanted") == wanted:
                    return installation
            except ValueError:
                pass
        _say(log, f"installing {WHEEL} and a model environment into {home}")
        _install_wheel(home, python, version)
        _make_env(installation.python_env, python, wanted_requirements, wanted_paths)
        record.write_text(json.dumps({"wanted": wanted, **installation.to_dict()}, indent=2) + "\n")
    return installation


def existing(home: Path) -> Installation | None:
    """The installation already made under ``home``, if any, whatever it was made with."""
    home = Path(home).resolve()
    return Installation(home=home, python_env=home / "env") if (home / _RECORD).exists() else None


def _package_parent(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot find the {name} package")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _version_of(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def _install_wheel(home: Path, python: str, version: str) -> None:
    target = home / "wheel"
    if target.exists():
        shutil.rmtree(target)
    staging = Path(tempfile.mkdtemp(prefix="wheel.", dir=home))
    try:
        _pip(python, "install", "--no-deps", "--target", str(staging), WHEEL)
        root = staging / "pytriton" / "tritonserver"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise RuntimeError(f"{WHEEL} has no Python backend stub for Python {version}")
        # The Python backend looks for its stub beside libtriton_python.so.
        shutil.copy2(stub, root / "backends" / "python" / stub.name)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _make_env(env: Path, python: str, requirements: Sequence[str], paths: Sequence[str]) -> None:
    if env.exists():
        shutil.rmtree(env)
    subprocess.run([python, "-m", "venv", str(env)], check=True)
    env_python = str(env / "bin" / "python")
    _pip(env_python, "install", *requirements)
    site = subprocess.run(
        [env_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if paths:
        Path(site, "omi-adapters-sources.pth").write_text("".join(f"{p}\n" for p in paths))


def _pip(python: str, *args: str) -> None:
    command = [python, "-m", "pip", args[0], "--quiet", "--disable-pip-version-check", *args[1:]]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(enabled: bool, text: str) -> None:
    if enabled:
        print(f"omi-triton: {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TritonServer:
    """A running ``tritonserver`` process serving one model repository.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Its output goes to
    :attr:`log_path`, which error messages quote when the server does not come up.
    """

    def __init__(
        self,
        installation: Installation,
        repository: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.installation = installation
        self.repository = Path(repository).resolve()
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log_path = log_path or self.repository.parent / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint, as tritonclient takes it."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until it is live.

        Triton loads every model of the repository before it opens its endpoints, so once it
        is live each model is loaded or has failed (``ready()`` is then false, and the model's
        readiness and the repository index give the reason).
        """
        command = self.installation.command(self.repository, self.http_port, self.grpc_port, self.metrics_port)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.installation.environment(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
                if self._health("live"):
                    return
                time.sleep(0.2)
            raise RuntimeError(f"tritonserver was not ready within {timeout:.0f}s:\n{self.log_tail()}")
        except BaseException:
            self.stop()  # also on Ctrl-C while waiting: never leave a server behind
            raise

    def ready(self) -> bool:
        """Whether the server answers ready (HTTP ``/v2/health/ready``): every model loaded."""
        return self._health("ready")

    def _health(self, what: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/{what}", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server: SIGTERM (Triton unloads its models), then SIGKILL after ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # The backend stubs are in the server's session (its process group): whatever the way the
        # server ended, none of them may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        """The last lines the server wrote."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m omi_triton.server REPO``: serve a repository in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m omi_triton.server", description=main.__doc__)
    parser.add_argument("repository", type=Path, help="a model repository written by `omi build triton`")
    parser.add_argument(
        "--home", type=Path, default=Path(".tools/tritonserver"), help="where tritonserver is installed"
    )
    parser.add_argument("--requirement", "-r", action="append", default=[], help="a pip requirement of the models")
    parser.add_argument("--path", action="append", type=Path, default=[], help="a folder for the models' sys.path")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args(argv)
    installation = existing(args.home) if not (args.requirement or args.path) else None
    if installation is None:
        # By default the models see the omi-adapters sources this interpreter runs.
        paths = args.path or sorted({_package_parent("omi_adapters"), _package_parent("omi_triton")})
        installation = install(args.home, requirements=args.requirement, paths=paths)
    command = installation.command(args.repository.resolve(), args.http_port, args.grpc_port, args.metrics_port)
    os.execve(command[0], command, installation.environment())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
