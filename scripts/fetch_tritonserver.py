#!/usr/bin/env python3
"""Install a real tritonserver for the tests and local use into .tools/tritonserver, once.

Fetches the nvidia-pytriton wheel (its tritonserver binary, the Python backend and its stubs), sets up its Python
backend stub, and makes the model environment: numpy<2 (the stub of tritonserver 2.51 needs
it), the examples' dependencies at the versions of requirements/constraints.txt, and this
checkout on sys.path. Reruns reuse what is there. Prints the installation record as JSON:
the tritonserver path, its backend and cache directories, and the PATH prefix it needs.

    .venv/bin/python scripts/fetch_tritonserver.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".tools" / "tritonserver"
#: What the example models import besides numpy, pinned as the project's constraints pin them.
EXAMPLE_PACKAGES = ("scikit-learn", "joblib")

sys.path.insert(0, str(ROOT / "adapters" / "triton"))
from omi_triton.server import Installation, install


def pinned(names: tuple[str, ...]) -> list[str]:
    """Requirement lines for ``names``, pinned to requirements/constraints.txt when listed there."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        name, sep, _ = line.partition("==")
        if sep:
            pins[name.strip().lower().replace("_", "-")] = line.strip()
    return [pins.get(name, name) for name in names]


def fetch() -> Installation:
    """Install (or find) tritonserver and the model environment under .tools/tritonserver."""
    return install(HOME, requirements=pinned(EXAMPLE_PACKAGES), paths=[ROOT, ROOT / "adapters" / "triton"])


def main() -> int:
    print(json.dumps(fetch().to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
