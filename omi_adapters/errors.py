"""The one error tree of omi-adapters.

Every error carries a transport-neutral :class:`ErrorCode`; each front end maps that code
once, in one table (HTTP status, gRPC status, OMI item failure, Triton ``TritonError``)::

    OmiError
    ├── ConfigurationError      a model declaration or a server setting is wrong
    ├── InvalidInputError       a request does not match the wire format or the contract
    │   └── PayloadTooLargeError  a request is larger than a declared limit
    ├── ModelNotFoundError      no model (or version) of that name is served
    ├── ModelNotReadyError      the model is not loaded (yet)
    │   └── ModelLoadError      loading the model failed; retried only when asked
    ├── PredictError            the user's predict raised or returned a wrong value
    ├── PredictTimeoutError     predict took longer than the declared run timeout
    └── ServerStoppingError     the server stopped before the request finished
"""

from __future__ import annotations

import enum

__all__ = [
    "ConfigurationError",
    "ErrorCode",
    "InvalidInputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "OmiError",
    "PayloadTooLargeError",
    "PredictError",
    "PredictTimeoutError",
    "ServerStoppingError",
]


class ErrorCode(enum.Enum):
    """Transport-neutral error classes; the names follow gRPC's canonical codes."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class OmiError(Exception):
    """Base of every error raised by omi-adapters."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(OmiError):
    """A model declaration or a server setting is wrong; raised at decoration or start-up."""

    code = ErrorCode.INVALID_ARGUMENT


class InvalidInputError(OmiError):
    """A request is malformed or does not match the model's declared contract."""

    code = ErrorCode.INVALID_ARGUMENT


class PayloadTooLargeError(InvalidInputError):
    """A request is larger than a limit the model or the platform declares."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class ModelNotFoundError(OmiError):
    """No model of that name, or no such version of it, is served here."""

    code = ErrorCode.NOT_FOUND


class ModelNotReadyError(OmiError):
    """The model is not ready to serve: still loading, or not loaded yet."""

    code = ErrorCode.UNAVAILABLE


class ModelLoadError(ModelNotReadyError):
    """The model's loader raised; the failure is kept until a retry is asked for."""


class PredictError(OmiError):
    """The user's predict raised, or returned something that breaks the declared outputs."""

    code = ErrorCode.INTERNAL

    @classmethod
    def raised(cls, model: str, exc: BaseException) -> PredictError:
        """The error for ``exc`` raised inside ``model``'s predict: its type and message, the
        same on every target, and never its traceback (that goes to the log)."""
        text = str(exc)
        return cls(f"model '{model}' failed: {type(exc).__name__}{': ' + text if text else ''}")


class PredictTimeoutError(OmiError):
    """Predict did not finish within the model's declared run timeout."""

    code = ErrorCode.DEADLINE_EXCEEDED


class ServerStoppingError(OmiError):
    """The server is stopping and the request did not finish within the grace period."""

    code = ErrorCode.UNAVAILABLE
