"""The one error tree of omi-adapters.

Every error carries a transport-neutral :class:`ErrorCode`; each front end maps that code
once, in one table (HTTP status, gRPC status, OMI item failure, Triton ``TritonError``)::

    OmiError
    ├── ConfigurationError      a model declaration or a server setting is wrong
    ├── InvalidInputError       a request does not match the wire format or the contract
    │   ├── PayloadTooLargeError  a request is larger than a declared limit
    │   └── UnsupportedEncodingError  a body's content coding is not one the server reads
    ├── UnauthenticatedError    the request lacks the server's bearer token
    ├── ModelNotFoundError      no model (or version) of that name is served
    │   └── ModelUnloadedError  the model was taken out of service (the repository extension's unload)
    ├── ModelNotReadyError      the model is not loaded (yet)
    │   ├── ModelLoadError      loading the model failed; retried only when asked
    │   └── ModelStalledError   every predict slot of the model is stuck past its deadline
    ├── OverloadedError         a server-wide or per-model bound on waiting work is reached
    ├── PredictError            the user's predict raised or returned a wrong value
    ├── DeadlineExceededError   the request's deadline passed before it was answered
    └── ServerStoppingError     the server stopped before the request finished

Errors that a client should retry later carry ``retry_after`` (seconds), which HTTP sends as
``Retry-After`` and gRPC as ``grpc-retry-pushback-ms``.
"""

from __future__ import annotations

import enum

__all__ = [
    "ConfigurationError",
    "DeadlineExceededError",
    "ErrorCode",
    "InvalidInputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelStalledError",
    "ModelUnloadedError",
    "OmiError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PredictError",
    "ServerStoppingError",
    "UnauthenticatedError",
    "UnsupportedEncodingError",
]


class ErrorCode(enum.Enum):
    """Transport-neutral error classes; the names follow gRPC's canonical codes.

    ``OVERLOADED`` is the one that is not: too much work in flight, which gRPC reports as
    RESOURCE_EXHAUSTED but HTTP as 503 (``RESOURCE_EXHAUSTED`` is a request too large, 413).
    """

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    OVERLOADED = "OVERLOADED"
    INTERNAL = "INTERNAL"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class OmiError(Exception):
    """Base of every error raised by omi-adapters."""

    code: ErrorCode = ErrorCode.INTERNAL
    #: Seconds after which a retry may succeed, for errors that say "not now".
    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after

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


class UnsupportedEncodingError(InvalidInputError):
    """A request body's content coding (HTTP ``Content-Encoding``) is not one the server decodes.

    Its code is ``INVALID_ARGUMENT``; HTTP answers it 415 (RFC 9110, "415 Unsupported Media Type").
    """


class UnauthenticatedError(OmiError):
    """The server requires a bearer token and the request did not carry the right one."""

    code = ErrorCode.UNAUTHENTICATED


class ModelNotFoundError(OmiError):
    """No model of that name, or no such version of it, is served here."""

    code = ErrorCode.NOT_FOUND


class ModelUnloadedError(ModelNotFoundError):
    """The model was unloaded (Triton's model repository extension) and is not served until loaded again.

    Answered as Triton answers a model it does not serve: not found.
    """


class ModelNotReadyError(OmiError):
    """The model is not ready to serve: still loading, or not loaded yet."""

    code = ErrorCode.UNAVAILABLE


class ModelLoadError(ModelNotReadyError):
    """The model's loader raised; the failure is kept until a retry is asked for."""


class ModelStalledError(ModelNotReadyError):
    """Every predict slot of the model is held by a call past its deadline (a hung predict).

    The model answers nothing until one of them returns; readiness is false meanwhile, and
    liveness turns false if it lasts (so the platform replaces the process).
    """


class OverloadedError(OmiError):
    """Too much work is waiting: the server's in-flight bounds or the model's queue are full."""

    code = ErrorCode.OVERLOADED


class PredictError(OmiError):
    """The user's predict raised, or returned something that breaks the declared outputs."""

    code = ErrorCode.INTERNAL

    @classmethod
    def raised(cls, model: str, exc: BaseException) -> PredictError:
        """The error for ``exc`` raised inside ``model``'s predict: its type and message, the
        same on every target, and never its traceback (that goes to the log)."""
        text = str(exc)
        return cls(f"model '{model}' failed: {type(exc).__name__}{': ' + text if text else ''}")


class DeadlineExceededError(OmiError):
    """The request's deadline (the client's, the server's or the model's) passed first."""

    code = ErrorCode.DEADLINE_EXCEEDED


class ServerStoppingError(OmiError):
    """The server is stopping and the request did not finish within the grace period."""

    code = ErrorCode.UNAVAILABLE
