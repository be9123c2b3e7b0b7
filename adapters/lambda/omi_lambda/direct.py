"""Direct invocation: an event that is itself an OIP inference request gets the OIP response.

``aws lambda invoke --payload '{"model_name": "adder", "inputs": [...]}'`` and Step Functions
tasks send such events. The request is decoded by the same codec as the REST body
(the OIP's ``$inference_request``) and run by the same :class:`DataPlane`; what comes back is the
``$inference_response`` object, or an error object ``{"error": message, "status_code": N}``
whose status is the one the REST API would answer (``omi_adapters.rest.HTTP_STATUS``, the
one table from the error tree). Nothing is raised to the runtime: a raised error would reach
the caller as a Lambda function error with a traceback instead of a clear message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from omi_adapters.codecs import oip_json
from omi_adapters.codecs.tensors import kind_of
from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import ErrorCode, InvalidInputError, OmiError, PayloadTooLargeError
from omi_adapters.rest import HTTP_STATUS

__all__ = ["error_object", "internal_error_object", "invoke", "is_inference_request"]

log = logging.getLogger("omi_lambda")


def is_inference_request(event: Any) -> bool:
    """An object with ``inputs`` that is not an HTTP event (those all carry ``requestContext``)."""
    return isinstance(event, Mapping) and "inputs" in event and "requestContext" not in event


def invoke(
    dataplane: DataPlane,
    loop: asyncio.AbstractEventLoop,
    event: Mapping[str, Any],
    cold: bool,
    max_bytes: int,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one direct inference within ``timeout`` seconds; returns the OIP response or an error object.

    A response larger than ``max_bytes`` as JSON (Lambda's 6 MB) becomes a 413 error object:
    the runtime would otherwise fail the invocation with a bare "payload size exceeded".
    """
    began = time.perf_counter()
    model = None
    try:
        name, version = _model_of(dataplane, event)
        model = dataplane.get(name, version)
        request = oip_json.request_from_dict(dict(event))
        response = loop.run_until_complete(dataplane.run(model, request, timeout=timeout))
        compact = orjson.dumps(oip_json.response_to_dict(response), option=orjson.OPT_SERIALIZE_NUMPY)
        # Plain Python values for the runtime's encoder, with the numbers written as the REST
        # API writes them (float32 0.1 stays 0.1, where ndarray.tolist() gives 0.10000000149011612).
        obj: dict[str, Any] = orjson.loads(compact)
        size = _payload_size(obj, len(compact), max_bytes)
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"the response of {size} bytes exceeds Lambda's limit of {max_bytes} bytes (6 MB); "
                "ask for fewer or smaller outputs"
            )
    except OmiError as exc:
        answer = error_object(exc, cold)
        _observe(dataplane, model, answer, exc.code, began)
        return answer
    except Exception as exc:  # noqa: BLE001 - the last line of defence: an error object, never a traceback
        answer = internal_error_object(exc, cold)
        _observe(dataplane, model, answer, ErrorCode.INTERNAL, began)
        return answer
    # The response stays a valid $inference_response: the flag goes among its parameters.
    obj["parameters"] = {**obj.get("parameters", {}), "cold_start": cold}
    _observe(dataplane, model, obj, None, began)
    return obj


def _observe(
    dataplane: DataPlane, model: Model | None, answer: Mapping[str, Any], code: ErrorCode | None, began: float
) -> None:
    """Report the request to the DataPlane's observer, its outcome the status the REST API would give."""
    outcome = str(answer.get("status_code", 200))
    dataplane.observer.request("direct", model, outcome, code, time.perf_counter() - began, 0, 0)


def _payload_size(obj: Any, compact_size: int, max_bytes: int) -> int:
    """The size of ``obj`` as the runtime sends it, measured only when it may exceed ``max_bytes``.

    awslambdaric encodes a handler's answer with simplejson's defaults: a space after every
    ``,`` and ``:``, ``1e-08`` for orjson's ``1e-8``, and before python3.12 ``\\u`` escapes for
    non-ASCII text. That is at most three times orjson's compact size ``compact_size``, so only
    answers above a third of the limit are encoded again (by the standard library's ``json``,
    whose defaults write the same text, ASCII-escaped: the larger of the two forms).
    """
    if 3 * compact_size <= max_bytes:
        return compact_size
    return len(json.dumps(obj))


def error_object(exc: OmiError, cold: bool) -> dict[str, Any]:
    """``{"error": message, "status_code": N, "cold_start": bool}`` for an error of the tree."""
    return {"error": exc.message, "status_code": HTTP_STATUS[exc.code], "cold_start": cold}


def internal_error_object(exc: BaseException, cold: bool) -> dict[str, Any]:
    """A bug of ours: logged with its traceback, answered without it."""
    log.exception("unexpected error while serving a direct invocation")
    return {"error": f"internal error ({type(exc).__name__})", "status_code": 500, "cold_start": cold}


def _model_of(dataplane: DataPlane, event: Mapping[str, Any]) -> tuple[str, str | None]:
    name = event.get("model_name")
    version = event.get("model_version")
    if version is not None and not isinstance(version, str):
        raise InvalidInputError(f"'model_version' must be a string, got {kind_of(version)}")
    if name is None:
        names = list(dict.fromkeys(m.name for m in dataplane.models))
        if len(names) > 1:
            raise InvalidInputError(
                f"this function serves several models ({', '.join(names)}): name one with 'model_name'"
            )
        return names[0], version
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"'model_name' must be a non-empty string, got {kind_of(name)}")
    return name, version
