"""The one table from omi-adapters' error codes to Triton's per-request ``TritonError`` codes.

A request that fails gets a response carrying ``pb_utils.TritonError(message, code)``; Triton
turns the code into the HTTP status and gRPC status its clients see (python_backend README,
"Error Handling"). Triton has no RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or UNAUTHENTICATED code:
an oversized request is refused as invalid, a predict timeout or an overload is reported as
unavailable (Triton checks its own clients' credentials before a request reaches the model).
"""

from __future__ import annotations

from typing import Any

from omi_adapters.errors import ErrorCode, OmiError

__all__ = ["TRITON_CODES", "triton_error"]

#: ErrorCode -> the name of the ``pb_utils.TritonError`` code constant.
TRITON_CODES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "INVALID_ARG",
    ErrorCode.RESOURCE_EXHAUSTED: "INVALID_ARG",
    ErrorCode.NOT_FOUND: "NOT_FOUND",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.OVERLOADED: "UNAVAILABLE",
    ErrorCode.UNAUTHENTICATED: "INVALID_ARG",
    ErrorCode.INTERNAL: "INTERNAL",
    ErrorCode.DEADLINE_EXCEEDED: "UNAVAILABLE",
}


def triton_error(pb_utils: Any, error: OmiError) -> Any:
    """The ``TritonError`` that answers a request failed with ``error``."""
    code = getattr(pb_utils.TritonError, TRITON_CODES[error.code], None)
    if code is None:  # Python backends before 23.11 take a message only
        return pb_utils.TritonError(str(error))
    return pb_utils.TritonError(str(error), code)
