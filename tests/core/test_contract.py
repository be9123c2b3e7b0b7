"""The @model decorator: declarations checked once, requests and results checked against them."""

from __future__ import annotations

import threading
import time
from typing import TypedDict

import numpy as np
import pytest

from omi_adapters import ConfigurationError, InvalidInputError, ModelLoadError, PredictError, Tensor, model
from omi_adapters.types import InputTensor


def tensor(name: str, datatype: str, array: np.ndarray) -> InputTensor:
    return InputTensor(name=name, datatype=datatype, shape=array.shape, data=array)


def make_adder(**kwargs):
    @model(name="adder", inputs=[Tensor("X", "FP32", [-1, 4])], outputs=[Tensor("Y", "FP32", [-1, 4])], **kwargs)
    def adder(X):
        return X + 1

    return adder


# --- declaration errors --------------------------------------------------------------------

DECLARATION_ERRORS = [
    (lambda: Tensor("X", "FP33", [1]), "unknown datatype 'FP33'"),
    (lambda: Tensor("X", "FP32", [-2]), "shape must be a list of integers >= -1"),
    (lambda: Tensor("X", "FP32", "12"), "shape must be a list"),
    (lambda: Tensor("", "FP32", [1]), "tensor name ''"),
    (lambda: Tensor("a/b", "FP32", [1]), "tensor name 'a/b'"),
]


@pytest.mark.parametrize("make, message", DECLARATION_ERRORS)
def test_bad_tensor_declarations(make, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_parameter_that_is_not_an_input() -> None:
    with pytest.raises(ConfigurationError, match="parameter 'Z' is not a declared input"):

        @model(name="m", inputs=[Tensor("X", "FP32", [1])], outputs=[Tensor("Y", "FP32", [1])])
        def m(X, Z):
            return X


def test_input_without_parameter() -> None:
    with pytest.raises(ConfigurationError, match="declared input 'W' has no parameter"):

        @model(
            name="m", inputs=[Tensor("X", "FP32", [1]), Tensor("W", "FP32", [1])], outputs=[Tensor("Y", "FP32", [1])]
        )
        def m(X):
            return X


def test_kwargs_take_any_input_names() -> None:
    @model(name="m", inputs=[Tensor("in.txt", "BYTES", [1])], outputs=[Tensor("Y", "BYTES", [1])])
    def m(**inputs):
        return inputs["in.txt"]

    assert m.inputs[0].name == "in.txt"


def test_duplicate_names() -> None:
    with pytest.raises(ConfigurationError, match="duplicate tensor name 'X'"):
        model(
            name="m", inputs=[Tensor("X", "FP32", [1]), Tensor("X", "FP32", [1])], outputs=[Tensor("Y", "FP32", [1])]
        )(lambda X: X)


def test_one_array_for_two_outputs_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="returns one array, but 2 outputs"):

        @model(
            name="m", inputs=[Tensor("X", "FP32", [1])], outputs=[Tensor("A", "FP32", [1]), Tensor("B", "FP32", [1])]
        )
        def m(X) -> np.ndarray:
            return X


class Out(TypedDict):
    A: np.ndarray
    C: np.ndarray


def test_typeddict_keys_must_be_the_outputs() -> None:
    with pytest.raises(ConfigurationError, match=r"keys \['A', 'C'\], but the outputs are \['A', 'B'\]"):

        @model(
            name="m", inputs=[Tensor("X", "FP32", [1])], outputs=[Tensor("A", "FP32", [1]), Tensor("B", "FP32", [1])]
        )
        def m(X) -> Out:
            return {"A": X, "C": X}


def test_batching_needs_a_variable_first_dimension() -> None:
    with pytest.raises(ConfigurationError, match="needs -1 as its first"):
        model(name="m", inputs=[Tensor("X", "FP32", [2, 4])], outputs=[Tensor("Y", "FP32", [-1])], max_batch_size=8)(
            lambda X: X
        )


@pytest.mark.parametrize("kwargs, message", [
    ({"load": "sometimes"}, "load must be 'eager', 'lazy' or 'background'"),
    ({"max_batch_size": -1}, "max_batch_size must be an integer >= 0"),
    ({"resources": {"ram": "1G"}}, "resources: unknown field"),
    ({"timeouts": {"run": "soon"}}, "timeouts.run: 'soon' is not a duration"),
    ({"resources": {"required_ram": "lots"}}, "not a size"),
])  # fmt: skip
def test_bad_model_options(kwargs, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_adder(**kwargs)


def test_class_needs_predict() -> None:
    with pytest.raises(ConfigurationError, match="has no predict method"):

        @model(name="m", inputs=[], outputs=[Tensor("Y", "FP32", [1])])
        class M:
            def load(self):
                pass


# --- requests ------------------------------------------------------------------------------


def test_bind_inputs_checks_datatype_and_shape() -> None:
    adder = make_adder()
    with pytest.raises(InvalidInputError, match=r"input 'X': expected FP32 \[-1, 4\], got INT32 \[2, 3\]"):
        adder.bind_inputs([tensor("X", "INT32", np.zeros((2, 3), np.int32))])
    with pytest.raises(InvalidInputError, match="unknown input 'Z'; model 'adder' takes: X"):
        adder.bind_inputs([tensor("Z", "FP32", np.zeros((2, 4), np.float32))])
    with pytest.raises(InvalidInputError, match=r"missing input 'X' \(FP32 \[-1, 4\]\)"):
        adder.bind_inputs([])
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(InvalidInputError, match="given more than once"):
        adder.bind_inputs([tensor("X", "FP32", x), tensor("X", "FP32", x)])
    assert adder.bind_inputs([tensor("X", "FP32", x)])["X"] is x


def test_batch_limits() -> None:
    m = make_adder(max_batch_size=2)
    with pytest.raises(InvalidInputError, match="batch size 3 exceeds max_batch_size 2"):
        m.bind_inputs([tensor("X", "FP32", np.zeros((3, 4), np.float32))])


def test_check_outputs() -> None:
    adder = make_adder()
    out = adder.check_outputs(np.ones((2, 4), np.float64))
    assert out["Y"].dtype == np.float32  # float64 results narrow to the declared FP32
    with pytest.raises(PredictError, match=r"output 'Y': expected FP32 \[-1, 4\], got float32 \[2, 3\]"):
        adder.check_outputs(np.ones((2, 3), np.float32))
    with pytest.raises(PredictError, match="cannot return <U1 data as FP32"):
        adder.check_outputs(np.array([["a"] * 4]))
    with pytest.raises(PredictError, match="returned undeclared output"):
        adder.check_outputs({"Y": np.ones((1, 4)), "Z": 1})
    with pytest.raises(PredictError, match="returned no output 'Y'"):
        adder.check_outputs({})


# --- loading -------------------------------------------------------------------------------


def counting_class(load="lazy", fail=False, delay=0.0):
    calls = {"load": 0}

    @model(name="counted", inputs=[Tensor("X", "INT64", [-1])], outputs=[Tensor("Y", "INT64", [-1])], load=load)
    class Counted:
        def load(self):
            calls["load"] += 1
            time.sleep(delay)
            if fail:
                raise RuntimeError("weights missing")

        def predict(self, X):
            return X * 2

    return Counted, calls


def test_lazy_loads_once_under_concurrent_first_requests() -> None:
    m, calls = counting_class(delay=0.2)
    assert m.state.value == "UNLOADED" and not m.ready
    m.start()  # lazy: nothing happens
    assert calls["load"] == 0
    results = []
    threads = [threading.Thread(target=lambda: results.append(m.wait_ready())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls["load"] == 1 and len(results) == 8 and m.ready


def test_eager_loads_at_start() -> None:
    m, calls = counting_class(load="eager")
    m.start()
    assert calls["load"] == 1 and m.ready


def test_background_load_and_wait_timeout() -> None:
    m, calls = counting_class(load="background", delay=0.5)
    m.start()
    from omi_adapters import ModelNotReadyError

    with pytest.raises(ModelNotReadyError, match="still loading"):
        m.wait_ready(timeout=0.01)
    m.wait_ready(timeout=5)
    assert m.ready and calls["load"] == 1


def test_failed_load_is_kept_until_retry() -> None:
    m, calls = counting_class(fail=True)
    for _ in range(3):
        with pytest.raises(ModelLoadError, match="model 'counted' failed to load: RuntimeError: weights missing"):
            m.wait_ready()
    assert calls["load"] == 1 and m.state.value == "FAILED"
    assert isinstance(m.load_error, RuntimeError)
    with pytest.raises(ModelLoadError):
        m.load(retry=True)
    assert calls["load"] == 2


def test_calling_the_model_calls_predict() -> None:
    assert (make_adder()(X=np.zeros((1, 4))) == 1).all()


def test_contract_lists_everything() -> None:
    c = make_adder(author="Ada <ada@example.com>", features={"drift_format": "x"}).contract()
    assert c["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert c["omi"]["author"] == "Ada <ada@example.com>"
    assert c["omi"]["features"]["drift_format"] == "x"
    assert c["load"] == "eager" and c["max_batch_size"] == 0


@pytest.mark.parametrize(
    ("datatype", "result", "message"),
    [
        ("INT8", np.array([1000]), "output 'Y': value 1000 is out of range for INT8"),
        ("INT16", np.array([-40000]), "output 'Y': value -40000 is out of range for INT16"),
        ("UINT16", np.array([70000], dtype=np.uint32), "output 'Y': value 70000 is out of range for UINT16"),
        ("INT64", np.array([2**64 - 1], dtype=np.uint64), "value 18446744073709551615 is out of range for INT64"),
    ],
)
def test_integer_outputs_out_of_range_are_refused_not_wrapped(datatype: str, result, message: str) -> None:
    @model(name="wide", inputs=[], outputs=[Tensor("Y", datatype, [1])])
    def wide() -> np.ndarray:
        return result

    with pytest.raises(PredictError, match=message):
        wide.check_outputs(result)


def test_integer_outputs_in_range_convert() -> None:
    @model(name="narrow", inputs=[], outputs=[Tensor("Y", "INT8", [2])])
    def narrow() -> np.ndarray:
        return np.array([-128, 127])

    out = narrow.check_outputs(np.array([-128, 127]))["Y"]
    assert out.dtype == np.int8 and out.tolist() == [-128, 127]


def test_a_predict_returning_none_is_named_as_such() -> None:
    @model(name="forgot", inputs=[], outputs=[Tensor("Y", "FP32", [1])])
    def forgot() -> None:
        return None

    with pytest.raises(PredictError, match=r"model 'forgot' returned None; predict must return an array$"):
        forgot.check_outputs(None)
