"""Generated OMI input files (JSON of any shape, .npy files of any dtype, raw bytes) through the
file codec: each decodes to the declared datatype and item shape, or fails with an error of the
error tree, which fails that item alone with a message; nothing else may escape."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omi_adapters import Tensor
from omi_adapters.codecs.omi_files import InputFile
from omi_adapters.errors import OmiError
from omi_adapters.types import ARRAY_DTYPES

SPECS = [
    Tensor("X", "FP32", [-1, 3]),
    Tensor("X", "BF16", [-1]),
    Tensor("X", "FP16", [2]),
    Tensor("X", "INT8", [-1]),
    Tensor("X", "UINT64", [-1]),
    Tensor("X", "BOOL", [-1]),
    Tensor("X", "BYTES", [1]),
    Tensor("X", "BYTES", [-1, 2]),
    Tensor("X", "BYTES", [1], media_types=["text/plain"]),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["data", "shape", "datatype", "x"]), inner)
    ),
    max_leaves=10,
)
npy_dtypes = hnp.scalar_dtypes() | hnp.byte_string_dtypes() | hnp.unicode_string_dtypes()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


files = (
    json_values.map(lambda doc: json.dumps(doc).encode())
    | hnp.arrays(npy_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3)).map(_npy)
    | st.binary(max_size=40)
    | st.binary(max_size=40).map(lambda tail: b"\x93NUMPY" + tail)
)


@pytest.mark.timeout(300)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(SPECS), batched=st.booleans(), data=files)
def test_generated_files_decode_or_fail_with_an_error_of_the_tree(spec: Tensor, batched: bool, data: bytes) -> None:
    if batched and spec.shape[0] != -1:
        batched = False
    file = InputFile(spec, batched)
    try:
        array = file.decode(data)
    except OmiError as exc:
        event(type(exc).__name__)
        assert exc.message
        return
    event("decoded")
    assert array.dtype == ARRAY_DTYPES[spec.datatype]
    assert len(array.shape) == len(file.shape)
