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
    ErrorCode,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    OmiError,
    PayloadTooLargeError,
    PredictError,
    PredictTimeoutError,
    ServerStoppingError,
)
from omi_adapters.types import DATATYPES

__all__ = [
    "DATATYPES",
    "ConfigurationError",
    "ErrorCode",
    "InvalidInputError",
    "Model",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "OmiError",
    "PayloadTooLargeError",
    "PredictError",
    "PredictTimeoutError",
    "ServerStoppingError",
    "Tensor",
    "__version__",
    "model",
]
