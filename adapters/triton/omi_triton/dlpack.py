"""BF16 tensors in and out of the Python backend, through DLPack.

numpy has no bfloat16, so the Python backend refuses ``as_numpy()`` on a BF16 tensor and takes
no BF16 array (python_backend README, "BF16"; pb_tensor.cc). It does export and import DLPack
capsules, whose header carries the element type. Re-labelling that type in a capsule the stub
itself made -- BF16 as UINT16 on the way in, UINT16 as BF16 on the way out -- moves the same
2-byte bit patterns without a copy, and leaves the capsule's ownership to the stub.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

__all__ = ["bf16_bits", "bf16_tensor"]

# DLDataTypeCode values of dlpack.h.
_KDL_UINT = 1
_KDL_BFLOAT = 4


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensorHead(ctypes.Structure):
    # The leading fields of DLTensor (dlpack.h): data, device {type, id}, ndim, dtype.
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
    ]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _relabel(pb_utils: Any, tensor: Any, name: str, code: int) -> Any:
    capsule = tensor.to_dlpack()
    head = _DLTensorHead.from_address(_get_pointer(capsule, b"dltensor"))
    if head.dtype.bits != 16 or head.dtype.lanes != 1:
        raise ValueError(f"tensor '{name}' is not a 16-bit tensor")
    head.dtype.code = code
    return pb_utils.Tensor.from_dlpack(name, capsule)


def bf16_bits(pb_utils: Any, tensor: Any) -> np.ndarray[Any, Any]:
    """The bfloat16 bit patterns (uint16) of a BF16 request tensor, as a new array."""
    relabelled = _relabel(pb_utils, tensor, tensor.name(), _KDL_UINT)
    return np.array(relabelled.as_numpy(), dtype=np.uint16, copy=True)


def bf16_tensor(pb_utils: Any, name: str, bits: np.ndarray[Any, Any]) -> Any:
    """A BF16 ``pb_utils.Tensor`` holding the bfloat16 bit patterns ``bits`` (uint16)."""
    tensor = pb_utils.Tensor(name, np.ascontiguousarray(bits, dtype=np.uint16))
    return _relabel(pb_utils, tensor, name, _KDL_BFLOAT)
