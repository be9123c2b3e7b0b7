"""`omi build triton` without a server: the config.pbtxt it writes, the folder layout, reruns and
the errors it gives."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omi_triton import config as triton_config
from omi_triton.build import SHIM

from omi_adapters import Tensor, model
from omi_adapters.cli import main as omi
from omi_adapters.targets import load_target
from omi_adapters.types import DATATYPES
from tests.triton.conftest import EXAMPLES, HERE

ALL_TARGETS = [EXAMPLES / "adder.py", EXAMPLES / "text.py", EXAMPLES / "iris" / "model.py", HERE / "models.py"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    assert omi(["build", "triton", *map(str, ALL_TARGETS), "--out", str(repo)]) == 0
    return repo


def test_layout_and_config_parse_back(built: Path) -> None:
    models = [m for target in ALL_TARGETS for m in load_target(str(target))]
    assert sorted(p.name for p in built.iterdir()) == sorted({m.name for m in models})
    for m in models:
        if m.name == "versioned":
            continue  # two versions in one folder: test_two_versions_of_one_model_are_one_folder
        folder = built / m.name
        text = (folder / "config.pbtxt").read_text()
        parsed = triton_config.parse(text)
        target = parsed.parameters[triton_config.TARGET_PARAMETER].string_value
        assert parsed == triton_config.build_config(m, target)
        assert triton_config.to_text(parsed) == text  # and writes back to the same text
        assert (folder / m.version / "model.py").read_text() == SHIM
        file = target.partition(":")[0]
        assert (folder / m.version / file).is_file() and load_target(str(folder / m.version / target))[0].name == m.name


def test_config_fields(built: Path) -> None:
    pb = triton_config.model_config_pb2()
    adder = triton_config.parse((built / "adder" / "config.pbtxt").read_text())
    assert adder.backend == "python" and not adder.platform and adder.max_batch_size == 0
    assert not adder.HasField("dynamic_batching")
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in adder.input] == [
        ("X", "TYPE_FP32", [-1, -1])
    ]
    assert list(adder.version_policy.specific.versions) == [1]
    assert [(g.kind, g.count) for g in adder.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 1)]
    text = triton_config.parse((built / "text" / "config.pbtxt").read_text())
    assert text.max_batch_size == 32 and text.HasField("dynamic_batching")
    # Batch-only tensors: dims [1] reshaped to [] (Triton refuses empty dims).
    assert [
        (pb.DataType.Name(t.data_type), list(t.dims), t.HasField("reshape"), list(t.reshape.shape)) for t in text.input
    ] == [("TYPE_STRING", [1], True, [])]
    iris = triton_config.parse((built / "iris" / "config.pbtxt").read_text())
    assert [(t.name, list(t.dims), t.HasField("reshape")) for t in iris.output] == [
        ("probabilities", [3], False),
        ("label", [1], True),
    ]


def test_every_datatype_maps_to_its_triton_type() -> None:
    pb = triton_config.model_config_pb2()

    def fn(**inputs):  # type: ignore[no-untyped-def]
        return inputs

    every = model(
        name="every",
        inputs=[Tensor(f"in_{d}", d, [2]) for d in DATATYPES],
        outputs=[Tensor(f"out_{d}", d, [2]) for d in DATATYPES],
    )(fn)
    config = triton_config.build_config(every, "x:y")
    expected = ["TYPE_STRING" if d == "BYTES" else f"TYPE_{d}" for d in DATATYPES]
    assert [pb.DataType.Name(t.data_type) for t in config.input] == expected
    assert [pb.DataType.Name(t.data_type) for t in config.output] == expected


def test_options_instances_and_queue_delay(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    args = [
        "build",
        "triton",
        str(EXAMPLES / "text.py"),
        "--out",
        str(repo),
        "--instances",
        "3",
        "--max-queue-delay-us",
        "500",
    ]
    assert omi(args) == 0
    text = triton_config.parse((repo / "text" / "config.pbtxt").read_text())
    assert text.instance_group[0].count == 3 and text.dynamic_batching.max_queue_delay_microseconds == 500


def test_the_models_batching_policy_is_tritons_dynamic_batching() -> None:
    @model(
        name="policy",
        inputs=[Tensor("X", "FP32", [-1, 3])],
        outputs=[Tensor("Y", "FP32", [-1, 3])],
        max_batch_size=16,
        max_queue_delay=0.002,
        preferred_batch_sizes=[8, 4],
    )
    def policy(X):
        return X

    config = triton_config.build_config(policy, "code/policy.py:policy")
    assert config.max_batch_size == 16
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    # The flag still overrides the delay.
    assert (
        triton_config.build_config(policy, "x", max_queue_delay_us=7).dynamic_batching.max_queue_delay_microseconds == 7
    )


def test_two_versions_of_one_model_are_one_folder(built: Path) -> None:
    folder = built / "versioned"
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2", "config.pbtxt"]
    config = triton_config.parse((folder / "config.pbtxt").read_text())
    assert list(config.version_policy.specific.versions) == [1, 2]
    assert config.parameters["omi_target_1"].string_value == "code/models.py:versioned_v1"
    assert config.parameters["omi_target_2"].string_value == "code/models.py:versioned_v2"


def test_versions_with_other_tensors_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "clash.py"
    source.write_text(
        textwrap.dedent("""
        from omi_adapters import Tensor, model

        @model(name="m", version="1", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
        def one(X):
            return X

        @model(name="m", version="2", inputs=[Tensor("X", "INT32", [-1])], outputs=[Tensor("Y", "INT32", [-1])])
        def two(X):
            return X
    """)
    )
    result = subprocess.run(
        [sys.executable, "-m", "omi_adapters.cli", "build", "triton", str(source), "--out", str(tmp_path / "repo")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "model 'm' version 1 declares other tensors or batching than version 2" in result.stderr


def test_rerun_is_idempotent_and_replaces_the_whole_folder(built: Path) -> None:
    before = _files(built)
    (built / "adder" / "1" / "stale.txt").write_text("left over")
    assert omi(["build", "triton", *map(str, ALL_TARGETS), "--out", str(built)]) == 0
    assert _files(built) == before
    assert not [p for p in built.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_a_rebuild_that_cannot_move_its_folder_in_keeps_the_old_one(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _files(built)
    rename = Path.rename

    def failing(self: Path, target: Path) -> Path:
        if self.name.startswith(".adder.") and not self.name.startswith(".adder.old"):
            raise OSError(28, "No space left on device", str(target))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    assert omi(["build", "triton", str(ALL_TARGETS[0]), "--out", str(built)]) != 0
    assert "No space left on device" in capsys.readouterr().err
    assert _files(built) == before
    assert not [p for p in built.iterdir() if p.name.startswith(".")]


def test_package_module_target_is_imported_not_copied(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert omi(["build", "triton", "examples.adder", "--out", str(repo)]) == 0
    parsed = triton_config.parse((repo / "adder" / "config.pbtxt").read_text())
    assert parsed.parameters[triton_config.TARGET_PARAMETER].string_value == "examples.adder:adder"
    assert not list((repo / "adder" / "1" / "code").iterdir())


def test_top_level_package_target_is_imported_not_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "triton_pkgmodel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(MODEL.format(version=1, fn="predict"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    repo = tmp_path / "repo"
    assert omi(["build", "triton", "triton_pkgmodel:predict", "--out", str(repo)]) == 0
    parsed = triton_config.parse((repo / "dup" / "config.pbtxt").read_text())
    assert parsed.parameters[triton_config.TARGET_PARAMETER].string_value == "triton_pkgmodel:predict"
    assert not list((repo / "dup" / "1" / "code").iterdir())


def _write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


MODEL = """
from omi_adapters import Tensor, model

@model(name="dup", version="{version}", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])])
def {fn}(X):
    return X
"""


def test_a_version_given_twice_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _write(tmp_path / "clash_a.py", MODEL.format(version="1", fn="a"))
    second = _write(tmp_path / "clash_b.py", MODEL.format(version="1", fn="b"))
    assert omi(["build", "triton", str(first), str(second), "--out", str(tmp_path / "repo")]) == 2
    assert "model 'dup' version 1 is given twice" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_non_integer_version_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "versioned.py", MODEL.format(version="v2", fn="f"))
    assert omi(["build", "triton", str(source), "--out", str(tmp_path / "repo")]) == 2
    assert "Triton needs a positive integer version, got 'v2'" in capsys.readouterr().err


def test_unwritable_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert omi(["build", "triton", str(EXAMPLES / "adder.py"), "--out", str(blocker / "repo")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the Triton repository" in err and "a-file" in err


def test_foreign_folder_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "repo" / "adder"
    foreign.mkdir(parents=True)
    (foreign / "config.pbtxt").write_text('name: "adder"\nbackend: "onnxruntime"\n')
    assert omi(["build", "triton", str(EXAMPLES / "adder.py"), "--out", str(tmp_path / "repo")]) == 2
    assert "was not written by `omi build triton`" in capsys.readouterr().err
    assert (foreign / "config.pbtxt").read_text() == 'name: "adder"\nbackend: "onnxruntime"\n'


def test_missing_include_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "build",
        "triton",
        str(EXAMPLES / "adder.py"),
        "--out",
        str(tmp_path / "r"),
        "--include",
        str(tmp_path / "nope"),
    ]
    assert omi(args) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_the_backend_imports_no_client_or_protobuf() -> None:
    # model.py runs inside Triton's stub: it must not need tritonclient, protobuf or grpc.
    code = (
        "import sys, omi_triton.backend; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tritonclient', 'google', 'grpc', 'fastapi')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_outputs_labels_are_its_label_file(tmp_path: Path) -> None:
    source = tmp_path / "labelled.py"
    source.write_text(
        textwrap.dedent(
            """
            from omi_adapters import Tensor, model

            @model(inputs=[Tensor("X", "FP32", [-1, 3])],
                   outputs=[Tensor("P", "FP32", [-1, 3], labels=["cat", "dog", "bird"]), Tensor("Q", "FP32", [-1])])
            def labelled(X):
                return {"P": X, "Q": X[:, 0]}
            """
        )
    )
    repo = tmp_path / "repo"
    assert omi(["build", "triton", str(source), "--out", str(repo)]) == 0
    config = triton_config.parse((repo / "labelled" / "config.pbtxt").read_text())
    assert [o.label_filename for o in config.output] == ["P.labels.txt", ""]
    assert (repo / "labelled" / "P.labels.txt").read_text() == "cat\ndog\nbird\n"  # line i: class i
    assert sorted(p.name for p in (repo / "labelled").iterdir()) == ["1", "P.labels.txt", "config.pbtxt"]
