"""Triton's classification and model configuration extensions answered by a real tritonserver and by
``omi serve`` for the same models: the same top-k strings and shapes, and the same configuration in
Triton's JSON form (but the fields Triton fills in itself when it loads a model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from tritonclient import http

from omi_adapters.cli import main as omi
from tests.conftest import ROOT
from tests.servers import Served, serve

pytestmark = pytest.mark.timeout(900)

TARGETS = [f"{ROOT / 'tests' / 'serving' / 'extension_models.py'}:{name}" for name in ("scores", "batched_scores")]
#: What tritonserver completes in a configuration it loads (its "auto-complete"), absent from config.pbtxt.
AUTO_COMPLETED = ("optimization", "default_model_filename")


@pytest.fixture(scope="module")
def tritonserver(triton_install: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[http.InferenceServerClient]:
    from omi_triton.server import TritonServer

    repo = tmp_path_factory.mktemp("extensions") / "repo"
    assert omi(["build", "triton", *TARGETS, "--out", str(repo)]) == 0
    with TritonServer(triton_install, repo) as server:  # started here, stopped on the way out
        client = http.InferenceServerClient(server.http_url, network_timeout=60)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(scope="module")
def omi_serve() -> Iterator[Served]:
    with serve(*TARGETS, protocols=("rest",)) as served:
        served.wait_ready()
        yield served


CASES = [
    ("scores", np.array([0.1, 0.7, 0.2], np.float32), {"LABELLED": 2, "PLAIN": 5}),
    ("scores", np.array([3, 1, 3], np.float32), {"PLAIN": 1, "LABELLED": 3}),
    ("batched_scores", np.array([[0.1, 0.7, 0.2], [0.5, 0.0, 0.5]], np.float32), {"Y": 2}),
    ("batched_scores", np.array([[-1.5, 2.25, 1e-7]], np.float32), {"Y": 3}),
]


@pytest.mark.parametrize(("name", "x", "counts"), CASES)
@pytest.mark.parametrize("binary", [False, True])
def test_classification_answers_equal_tritons(
    tritonserver: http.InferenceServerClient,
    omi_serve: Served,
    name: str,
    x: np.ndarray,
    counts: dict[str, int],
    binary: bool,
) -> None:
    def ask(client: http.InferenceServerClient) -> dict[str, Any]:
        tensor = http.InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        outputs = [http.InferRequestedOutput(o, binary_data=binary, class_count=k) for o, k in counts.items()]
        result = client.infer(name, [tensor], outputs=outputs)
        return {o: (result.get_output(o)["datatype"], result.as_numpy(o).tolist()) for o in counts}

    ours = http.InferenceServerClient(omi_serve.http_url)
    try:
        assert ask(ours) == ask(tritonserver)
    finally:
        ours.close()


@pytest.mark.parametrize("name", ["scores", "batched_scores"])
def test_the_configuration_is_tritons_but_what_triton_fills_in(
    tritonserver: http.InferenceServerClient, omi_serve: Served, name: str
) -> None:
    ours = http.InferenceServerClient(omi_serve.http_url)
    try:
        served = ours.get_model_config(name)
    finally:
        ours.close()
    loaded = tritonserver.get_model_config(name)
    for field in AUTO_COMPLETED:
        loaded.pop(field, None)
    assert served.pop("default_model_filename") == ""
    assert loaded["instance_group"][0].pop("name") == f"{name}_0"  # Triton names unnamed groups
    assert served["instance_group"][0].pop("name") == ""
    if "dynamic_batching" in served:
        # With no preferred batch size declared, Triton prefers its max_batch_size.
        assert served["dynamic_batching"]["preferred_batch_size"] == []
        assert loaded["dynamic_batching"].pop("preferred_batch_size") == [served["max_batch_size"]]
        served["dynamic_batching"].pop("preferred_batch_size")
    assert served == loaded
