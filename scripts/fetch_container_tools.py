#!/usr/bin/env python3
"""Set up what the Knative image test needs, once: buildah, podman, runc and a local Debian base.

No registry is reachable from these machines (no container image can be pulled), so the base image is
made from Debian's mirror with mmdebstrap (python3 and its venv module), imported into a
container storage of our own under .tools/containers (so nothing of the host's storage is
touched), and given the host's extra CA certificates, so that pip inside a build trusts the
same TLS the host does. Reruns reuse what is there.

Prints a JSON record: the storage.conf to point CONTAINERS_STORAGE_CONF at, and the base image.
Exit status 3 means apt (or Debian's mirror) is unreachable; any other failure is an error.

    .venv/bin/python scripts/fetch_container_tools.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".tools" / "containers"
PACKAGES = ("buildah", "podman", "runc", "mmdebstrap", "uidmap")
TOOLS = ("buildah", "podman", "runc", "mmdebstrap")
SUITE = "bookworm"
RAW_IMAGE = f"localhost/omi-debian-raw:{SUITE}"
BASE_IMAGE = f"localhost/omi-debian-python:{SUITE}"
CA_DIR = Path("/usr/local/share/ca-certificates")
UNREACHABLE = 3


class Unreachable(Exception):
    """apt or the Debian mirror cannot be reached."""


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its output when it fails."""
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        text = done.stdout + done.stderr
        _raise_if_unreachable(f"{' '.join(command)}: {text}")
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{text.strip()[-2000:]}")
    return done


def _raise_if_unreachable(text: str) -> None:
    signs = ("Temporary failure resolving", "Could not resolve", "Failed to fetch", "Network is unreachable")
    if any(sign in text for sign in signs):
        raise Unreachable(text.strip()[-500:])


def install_tools() -> None:
    """apt-get install the container tools unless they are all on PATH already."""
    if all(shutil.which(tool) for tool in TOOLS):
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"{', '.join(t for t in TOOLS if not shutil.which(t))} missing; install as root: apt-get install {' '.join(PACKAGES)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = run("apt-get", "update", "-qq", env=env)
    # apt-get update exits 0 even when no mirror answered; its warnings say so.
    _raise_if_unreachable(f"apt-get update: {update.stdout}{update.stderr}")
    # With recommends: podman's network backend and conmon's companions come that way.
    run("apt-get", "install", "-y", "-qq", *PACKAGES, env=env)


def storage_conf() -> Path:
    """A storage.conf keeping images and containers under .tools/containers."""
    conf = HOME / "storage.conf"
    text = f'[storage]\ndriver = "overlay"\ngraphroot = "{HOME / "storage"}"\nrunroot = "{HOME / "run"}"\n'
    if not conf.exists() or conf.read_text() != text:
        HOME.mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
    return conf


def make_base(env: dict[str, str]) -> None:
    """Build the base image from Debian's mirror unless it exists."""
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False, env=env).returncode == 0:
        return
    tar = HOME / f"debian-{SUITE}-python.tar"
    if not tar.exists():
        partial = tar.with_suffix(".tar.partial")
        run(
            "mmdebstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "--format=tar",
            SUITE,
            str(partial),
        )
        partial.rename(tar)
    run("podman", "import", "--quiet", str(tar), RAW_IMAGE, env=env)
    container = run("buildah", "from", "--quiet", RAW_IMAGE, env=env).stdout.strip()
    try:
        certificates = sorted(CA_DIR.glob("*.crt")) if CA_DIR.is_dir() else []
        for cert in certificates:
            run("buildah", "copy", "--quiet", container, str(cert), f"{CA_DIR}/{cert.name}", env=env)
        if certificates:
            run("buildah", "run", "--isolation", "chroot", container, "update-ca-certificates", env=env)
        run(
            "buildah", "config",
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            # pip vendors its own CA list; point it at the system's, which has the host's CAs.
            "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "--cmd", "python3", container, env=env,
        )  # fmt: skip
        run("buildah", "commit", "--quiet", "--rm", container, BASE_IMAGE, env=env)
    except BaseException:
        subprocess.run(["buildah", "rm", container], check=False, env=env, capture_output=True)
        raise


def main() -> int:
    try:
        install_tools()
        conf = storage_conf()
        env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
        make_base(env)
    except Unreachable as exc:
        print(f"apt is unreachable: {exc}", file=sys.stderr)
        return UNREACHABLE
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps({"storage_conf": str(conf), "base_image": BASE_IMAGE}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
