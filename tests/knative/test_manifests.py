"""``omi build knative``: the written manifests pass Knative's Service CRD (strict) and its
admission rules, and invalid ones are refused, naming the problem."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from omi_knative import validate
from omi_knative.manifests import Deployment, knative_service

from omi_adapters.cli import main
from omi_adapters.errors import ConfigurationError
from omi_adapters.targets import load_targets

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODELS = HERE / "knative_models.py"
SHARED_CRD = ROOT.parent / "shared" / "specs" / "knative-serving-v1.23-service-crd.yaml"


def build(tmp_path: Path, *targets: str, args: tuple[str, ...] = ()) -> Path:
    out = tmp_path / "out"
    assert main(["build", "knative", *targets, "--out", str(out), "--image", "registry.example/m:1", *args]) == 0
    return out


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return validate.load_schema()


@pytest.fixture
def service() -> dict[str, Any]:
    models = load_targets([f"{ROOT / 'examples' / 'adder.py'}"])
    return knative_service(models, Deployment(name="adder", image="registry.example/adder:1"))


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_rest_service_passes_strict_schema_and_admission(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"))
    service = load(out / "service.yaml")
    assert validate.schema_errors(service, schema) == []
    assert validate.admission_errors(service) == []
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    assert service["metadata"]["name"] == "adder"
    spec = service["spec"]["template"]["spec"]
    assert spec["containerConcurrency"] == 10
    (c,) = spec["containers"]
    assert c["image"] == "registry.example/m:1"
    assert c["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready", "port": 8080}}
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # A model stalled by hung predicts turns liveness false: the kubelet restarts the container.
    assert c["livenessProbe"] == {
        "httpGet": {"path": "/v2/health/live", "port": 8080},
        "periodSeconds": 10,
        "failureThreshold": 3,
    }
    # chassis' defaults: 512M of RAM, one CPU, 60 s to load, 60 s per request.
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "512M"}, "limits": {"memory": "512M"}}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 60
    assert spec["timeoutSeconds"] >= 60
    assert "env" not in c
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/max-scale"] == "10"
    assert annotations["autoscaling.knative.dev/target"] == "10"
    assert "serving.knative.dev/progress-deadline" not in annotations  # the default 600 s covers 60 s


def test_grpc_service_uses_h2c_and_tcp_probes(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"), args=("--protocol", "grpc", "--port", "9000"))
    service = load(out / "service.yaml")
    assert validate.schema_errors(service, schema) == [] and validate.admission_errors(service) == []
    c = container(service)
    assert c["ports"] == [{"name": "h2c", "containerPort": 9000, "protocol": "TCP"}]
    assert c["readinessProbe"] == {"tcpSocket": {"port": 9000}}
    assert "tcpSocket" in c["startupProbe"]
    assert load(out / "inferenceservice.yaml")["spec"]["predictor"]["containers"][0]["ports"][0]["name"] == "h2c"


def test_resources_probe_and_timeout_follow_the_omi_metadata(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = build(tmp_path, f"{MODELS}:big", args=("--concurrency", "4", "--min-scale", "1", "--max-scale", "3"))
    service = load(out / "service.yaml")
    assert validate.schema_errors(service, schema) == [] and validate.admission_errors(service) == []
    assert service["metadata"]["name"] == "big-model-v2"  # a DNS label made from "Big_Model.v2"
    c = container(service)
    assert c["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    startup = c["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= 300  # timeouts.status = 5m
    # Knative would fail the revision at its default 600 s progress deadline, before the image is
    # pulled and the probe's whole budget spent: the deadline covers both.
    deadline = service["spec"]["template"]["metadata"]["annotations"]["serving.knative.dev/progress-deadline"]
    assert deadline.endswith("s") and int(deadline[:-1]) >= budget + 300
    isvc = load(out / "inferenceservice.yaml")
    assert isvc["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == deadline
    spec = service["spec"]["template"]["spec"]
    assert spec["timeoutSeconds"] >= 90 and spec["containerConcurrency"] == 4
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["autoscaling.knative.dev/min-scale"], annotations["autoscaling.knative.dev/max-scale"]) == (
        "1",
        "3",
    )


def test_inference_service_runs_the_same_image_with_protocol_v2(tmp_path: Path) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"))
    isvc = load(out / "inferenceservice.yaml")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    predictor = isvc["spec"]["predictor"]
    (c,) = predictor["containers"]
    assert c["name"] == "kserve-container"
    assert c["image"] == container(load(out / "service.yaml"))["image"]
    assert {"name": "PROTOCOL", "value": "v2"} in c["env"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert validate.pod_errors({"containers": [c]}, "predictor") == []


def test_containerfile_has_the_omi_labels_env_and_serve_command(tmp_path: Path) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"), args=("--base", "localhost/base:1"))
    text = (out / "Containerfile").read_text()
    assert text.splitlines()[2] == "FROM localhost/base:1"
    logical = text.replace("\\\n", " ")
    (labels,) = [line for line in logical.splitlines() if line.startswith("LABEL ")]
    found = {k: json.loads(v) for k, v in re.findall(r'(\S+)=("(?:[^"\\]|\\.)*")', labels)}
    assert json.loads(found["ml.openmodel.interfaces"]) == ["kfserving"]
    assert json.loads(found["ml.openmodel.protocols"]) == [["v2"]]
    assert found["ml.openmodel.port"] == "8080" and found["ml.openml.model_name"] == "adder"
    env_line = next(line for line in logical.splitlines() if line.startswith("ENV INTERFACE"))
    env = {k: json.loads(v) for k, v in re.findall(r'(\S+)=("(?:[^"\\]|\\.)*")', env_line)}
    assert env == {"INTERFACE": "kfserving", "HTTP_PORT": "8080", "PROTOCOL": "v2", "MODEL_NAME": "adder"}
    cmd = json.loads(next(line for line in logical.splitlines() if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["/bin/sh", "-c"] and "omi serve adder.py:adder --protocols rest" in cmd[2]
    assert '"${PORT:-${HTTP_PORT:-8080}}"' in cmd[2]
    # Sized to the pod's 512M: an eighth of it in flight, a quarter of that per message (a JSON body
    # parsed whole takes up to ~16x its size), the server's deadline the run timeout.
    limits = dict(re.findall(r"(--max-inflight-bytes|--max-message-bytes|--request-timeout) (\S+)", cmd[2]))
    assert limits == {"--max-inflight-bytes": "64000000", "--max-message-bytes": "16000000", "--request-timeout": "60"}
    assert (out / "model" / "adder.py").read_bytes() == (ROOT / "examples" / "adder.py").read_bytes()


def test_manifests_are_written_as_yaml_of_the_built_data(tmp_path: Path, service: dict[str, Any]) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"), args=("--image", "registry.example/adder:1"))
    assert load(out / "service.yaml") == service


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["ports"].append({"name": "http1", "containerPort": 8081}), "one port only"),
        (lambda c: c.setdefault("env", []).append({"name": "PORT", "value": "80"}), "'PORT' is set by Knative"),
        (
            lambda c: c.setdefault("env", []).append({"name": "K_REVISION", "value": "x"}),
            "'K_REVISION' is set by Knative",
        ),
        (lambda c: c["ports"][0].update(name="http"), "'http' must be empty, 'http1' or 'h2c'"),
        (lambda c: c["ports"][0].update(name="grpc"), "'grpc' must be empty, 'http1' or 'h2c'"),
        (lambda c: c["ports"][0].update(containerPort=8012), "8012 is reserved"),
        (lambda c: c.update(name="queue-proxy"), "'queue-proxy' is reserved"),
        (lambda c: c["readinessProbe"].update(exec={"command": ["true"]}), "exactly one handler"),
        (lambda c: c["readinessProbe"]["httpGet"].update(port=9000), "must be the serving port 8080"),
    ],
)
def test_admission_rules_refuse(service: dict[str, Any], schema: dict[str, Any], change: Any, expected: str) -> None:
    broken = copy.deepcopy(service)
    change(container(broken))
    errors = validate.admission_errors(broken)
    assert any(expected in e for e in errors), errors
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        validate.validate_service(broken, schema)


def test_scale_annotations_and_limits_are_checked(service: dict[str, Any]) -> None:
    broken = copy.deepcopy(service)
    annotations = broken["spec"]["template"]["metadata"]["annotations"]
    annotations["autoscaling.knative.dev/min-scale"] = "5"
    annotations["autoscaling.knative.dev/max-scale"] = "2"
    broken["spec"]["template"]["spec"]["timeoutSeconds"] = 3600
    broken["metadata"]["name"] = "Big_Model"
    errors = "\n".join(validate.admission_errors(broken))
    assert "min-scale 5 exceeds max-scale 2" in errors
    assert "timeoutSeconds: 3600" in errors
    assert "'Big_Model' must be a DNS label" in errors


def test_strict_schema_catches_misspelt_and_mistyped_fields(service: dict[str, Any], schema: dict[str, Any]) -> None:
    misspelt = copy.deepcopy(service)
    container(misspelt)["ports"][0]["containerPorts"] = 8080
    errors = validate.schema_errors(misspelt, schema)
    assert any("containerPorts" in e and "ports[0]" in e for e in errors), errors
    # The CRD as published accepts the typo (the API server would prune it silently).
    raw = yaml.safe_load(Path(validate.__file__).with_name("schemas").joinpath(validate.CRD_FILE).read_text())
    loose = raw["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert validate.schema_errors(misspelt, loose) == []

    mistyped = copy.deepcopy(service)
    mistyped["spec"]["template"]["spec"]["containerConcurrency"] = "10"
    assert any(
        "containerConcurrency" in e and "'10' is not of type 'integer'" in e
        for e in validate.schema_errors(mistyped, schema)
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--env", "K_SERVICE=x"), "'K_SERVICE' is set by Knative"),
        (("--env", "PORT=9000"), "'PORT' is set by Knative"),
        (("--port", "8022"), "8022 is reserved"),
        (("--port", "70000"), "70000 is not a TCP port"),
        (("--min-scale", "-1"), "must be a whole number >= 0"),
        (("--name", "My_Service"), "must be a DNS label"),
        (("--min-scale", "4", "--max-scale", "2"), "min-scale 4 exceeds max-scale 2"),
        (("--concurrency", "4", "--target", "8"), "autoscaling target 8 exceeds containerConcurrency 4"),
        (("--env", "NOEQUALS"), "expected NAME=VALUE"),
        (("--crd", "/nonexistent/crd.yaml"), "cannot read the Knative Service CRD"),
    ],
)
def test_cli_refuses_to_write_an_invalid_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    out = tmp_path / "out"
    code = main(["build", "knative", str(ROOT / "examples" / "adder.py"), "--out", str(out), "--image", "m:1", *args])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_a_crd_read_from_a_path(tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text((Path(validate.__file__).parent / "schemas" / validate.CRD_FILE).read_text())
    build(tmp_path, str(ROOT / "examples" / "adder.py"), args=("--crd", str(crd)))
    crd.write_text("kind: NotACrd\n")
    assert (
        main(
            [
                "build",
                "knative",
                str(ROOT / "examples" / "adder.py"),
                "--out",
                str(tmp_path / "o2"),
                "--image",
                "m",
                "--crd",
                str(crd),
            ]
        )
        == 2
    )


@pytest.mark.skipif(not SHARED_CRD.exists(), reason="the shared spec folder is not beside this checkout")
def test_shipped_crd_is_knatives_v1_23() -> None:
    shipped = Path(validate.__file__).parent / "schemas" / validate.CRD_FILE
    assert shipped.read_bytes() == SHARED_CRD.read_bytes()


def test_several_models_share_one_service(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"), str(ROOT / "examples" / "text.py"))
    service = load(out / "service.yaml")
    assert validate.schema_errors(service, schema) == [] and validate.admission_errors(service) == []
    assert service["metadata"]["name"] == "adder"
    # Two models at chassis' defaults: their resources add up.
    assert container(service)["resources"]["requests"] == {"cpu": "2", "memory": "1024M"}
    text = (out / "Containerfile").read_text()
    assert 'MODEL_NAME="adder,text"' in text
    assert "omi serve adder.py:adder text.py:" in text
    assert sorted(p.name for p in (out / "model").iterdir()) == ["adder.py", "text.py"]


def test_rerun_replaces_its_own_output_but_not_a_foreign_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"), str(ROOT / "examples" / "text.py"))
    build(tmp_path, str(ROOT / "examples" / "adder.py"))
    assert [p.name for p in (out / "model").iterdir()] == ["adder.py"]  # nothing stale is left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code = main(["build", "knative", str(ROOT / "examples" / "adder.py"), "--out", str(foreign), "--image", "m:1"])
    assert code == 2
    assert "was not written by `omi build knative`" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_a_top_level_package_is_installed_not_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "knative_pkgmodel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text((ROOT / "examples" / "adder.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    out = build(tmp_path, "knative_pkgmodel:adder")
    cmd = next(line for line in (out / "Containerfile").read_text().splitlines() if line.startswith("CMD "))
    assert "omi serve knative_pkgmodel:adder " in cmd
    assert not list((out / "model").iterdir())


def test_workers_multiply_the_pods_memory_and_cpu_and_reach_the_serve_command(tmp_path: Path) -> None:
    out = build(tmp_path, str(ROOT / "examples" / "adder.py"), args=("--workers", "2"))
    c = container(load(out / "service.yaml"))
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "1024M"}, "limits": {"memory": "1024M"}}
    # containerConcurrency is the pod's: all its workers together.
    assert load(out / "service.yaml")["spec"]["template"]["spec"]["containerConcurrency"] == 10
    cmd = (out / "Containerfile").read_text()
    assert "--workers 2" in cmd and "--max-inflight-bytes 64000000" in cmd  # each worker's share of the memory


def test_a_checkout_install_puts_its_own_wheel_in_the_image(tmp_path: Path) -> None:
    # This project is installed from its checkout (make): the image cannot get this version from PyPI.
    from omi_knative.build import local_wheel

    from omi_adapters import __version__

    out = build(tmp_path, str(ROOT / "examples" / "adder.py"))
    wheels = sorted(p.name for p in (out / "wheels").iterdir())
    assert wheels == [f"omi_adapters-{__version__}-py3-none-any.whl"]
    assert local_wheel() is not None and local_wheel().name == wheels[0]
    text = (out / "Containerfile").read_text()
    assert "--find-links /opt/omi/wheels" in text and f"'omi-adapters[rest,fastjson]=={__version__}'" in text
