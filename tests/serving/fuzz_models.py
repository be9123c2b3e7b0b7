"""The models the fuzz tests send generated requests to, in one started DataPlane: the example
adder and identity models of the datatypes with the most edge cases."""

from __future__ import annotations

from omi_adapters.dataplane import DataPlane
from omi_adapters.targets import load_targets
from tests.conftest import EXAMPLES
from tests.serving.models import ECHO

ECHOES = [ECHO[datatype] for datatype in ("FP16", "BYTES", "UINT64", "BOOL", "BF16", "INT8")]
PLANE = DataPlane([*load_targets([str(EXAMPLES / "adder.py")]), *ECHOES])
PLANE.start()
#: (model, input, datatype, rank) of each served model's one input.
TARGETS = [("adder", "X", "FP32", 2)] + [(m.name, "IN", m.inputs[0].datatype, 1) for m in ECHOES]
