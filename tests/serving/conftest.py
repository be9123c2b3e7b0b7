"""One real ``omi serve`` (REST and gRPC) shared by the serving tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import EXAMPLES
from tests.servers import Served, serve

MODELS = "tests/serving/models.py"
TARGETS = (
    EXAMPLES / "adder.py",
    EXAMPLES / "text.py",
    EXAMPLES / "iris" / "model.py",
    f"{MODELS}:ECHOES",
    f"{MODELS}:failing",
    f"{MODELS}:slow",
    f"{MODELS}:adder_v2",
    f"{MODELS}:async_adder",
)


@pytest.fixture(scope="session")
def server() -> Iterator[Served]:
    with serve(*TARGETS, protocols=("rest", "grpc")) as served:
        served.wait_ready()
        yield served
