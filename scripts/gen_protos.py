"""Generate the Python modules of ``protos/*.proto`` into ``omi_adapters/protos/``.

Runs the pinned grpcio-tools (requirements/constraints.txt) and rewrites the generated
``import x_pb2`` lines as package-relative imports. ``--out DIR`` writes elsewhere,
for the test that fails when the committed code drifts from the protos.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "omi_adapters" / "protos"


def generate(out: Path) -> list[Path]:
    """Generate every proto into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(p.name for p in PROTOS.glob("*.proto"))
    include = Path(protoc.__file__).resolve().parent / "_proto"
    status = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTOS}", f"-I{include}",
         f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *sources]
    )  # fmt: skip
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    written = sorted(p for p in out.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")))
    modules = [Path(s).stem + "_pb2" for s in sources]
    for path in written:
        text = path.read_text()
        for module in modules:
            text = re.sub(rf"^import {module} as ", f"from . import {module} as ", text, flags=re.MULTILINE)
        path.write_text(text)
    init = out / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated from protos/*.proto by scripts/gen_protos.py; do not edit."""\n')
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="where to write (default: omi_adapters/protos)")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
