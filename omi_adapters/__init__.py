"""omi-adapters: write a predict function once, serve it on OMI, OIP (REST and gRPC), Knative,
AWS Lambda and Triton.

Importing this package loads only the standard library and numpy; every front end imports its
own framework when it is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from omi_adapters.contract import Model, Tensor, model  # noqa: E402
from omi_adapters.errors import (  # noqa: E402
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
)
from omi_adapters.types import DATATYPES  # noqa: E402

__all__ = [
    "__version__",
    "model",
    "Model",
    "Tensor",
    "DATATYPES",
    "ErrorCode",
    "OmiError",
    "ConfigurationError",
    "InvalidInputError",
    "PayloadTooLargeError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelLoadError",
    "PredictError",
    "PredictTimeoutError",
]
