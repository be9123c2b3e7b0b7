"""Serve omi-adapters models as an AWS Lambda function.

- :func:`build_handler` turns a model (or several) into a Lambda handler ``(event, context)``.
- ``omi_lambda.handler`` is a ready handler for the models named by ``$OMI_MODEL``
  (``module:attr``, several separated by commas): set the function's handler to
  ``omi_lambda.handler``.

Both are made on first use: importing this package costs nothing, so ``omi build lambda``
does not load the web framework, and the Lambda runtime pays for it during INIT only.
"""

from __future__ import annotations

import time

#: When the runtime imported this package: the start of the INIT this handler reports.
IMPORT_STARTED = time.perf_counter()

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omi_lambda.function import LambdaFunction, build_handler

__all__ = ["MODEL_ENV", "build_handler", "handler"]

#: The environment variable naming the models ``omi_lambda.handler`` serves.
MODEL_ENV = "OMI_MODEL"

_handler: LambdaFunction | None = None


def __getattr__(name: str) -> Any:
    # PEP 562: the runtime looks the handler up right after importing the package, still in INIT.
    global _handler
    if name == "build_handler":
        from omi_lambda.function import build_handler

        return build_handler
    if name == "handler":
        if _handler is None:
            from omi_lambda.function import handler_from_env

            _handler = handler_from_env(MODEL_ENV, started=IMPORT_STARTED)
        return _handler
    raise AttributeError(f"module 'omi_lambda' has no attribute {name!r}")
