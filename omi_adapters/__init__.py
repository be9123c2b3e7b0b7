"""omi-adapters: write a predict function once, serve it on OMI, OIP (REST and gRPC), Knative,
AWS Lambda and Triton.

Importing this package loads only the standard library and numpy; every front end imports its
own framework when it is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from omi_adapters.contract import Model, Tensor, model
from omi_adapters.errors import (
    ConfigurationError,
    DeadlineExceededError,
    ErrorCode,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    ModelStalledError,
    OmiError,
    OverloadedError,
    PayloadTooLargeError,
    PredictError,
    ServerStoppingError,
    UnauthenticatedError,
)
from omi_adapters.types import DATATYPES

__all__ = [
    "DATATYPES",
    "ConfigurationError",
    "DeadlineExceededError",
    "ErrorCode",
    "InvalidInputError",
    "Model",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelStalledError",
    "OmiError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PredictError",
    "ServerStoppingError",
    "Tensor",
    "UnauthenticatedError",
    "__version__",
    "model",
]
