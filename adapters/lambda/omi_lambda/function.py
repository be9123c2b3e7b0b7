"""The Lambda handler: HTTP events through Mangum to the OIP REST app, OIP requests directly.

One :class:`LambdaFunction` lives per execution environment. Building it is the INIT phase:
the REST app of ``omi serve`` is built once and eager models load (lazy ones load on the first
invocation that needs them, through the DataPlane). Every invocation then takes one of two
paths:

- API Gateway REST (v1) and HTTP API (v2), ALB and Function URL events go through Mangum to
  the same ASGI app as ``omi serve``, binary tensor extension included (Mangum decodes and
  encodes base64 bodies). Mangum runs with ``lifespan="off"``: it would otherwise run the
  app's start-up and shut-down on every invocation (Kludex/mangum#342).
- An event that is an OIP inference request is answered directly (:mod:`omi_lambda.direct`).

Each answer says whether it was a cold start: the ``x-omi-cold-start`` header on HTTP, the
``cold_start`` parameter of a direct response; the cold invocation also logs the init and
load durations. Module imports stay what the HTTP path needs: no grpc.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import orjson
from mangum import Mangum

from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane
from omi_adapters.errors import ConfigurationError, InvalidInputError, ModelLoadError, OmiError, PayloadTooLargeError
from omi_adapters.limits import Limits
from omi_adapters.rest import HTTP_STATUS, TIMEOUT, build_app
from omi_adapters.targets import load_targets
from omi_lambda import direct
from omi_lambda.emf import EmfRecorder, invocation_ids

__all__ = ["COLD_START_HEADER", "PAYLOAD_LIMIT", "LambdaFunction", "build_handler", "handler_from_env"]

#: Lambda's limit on a synchronous invocation's request and response payloads: 6 MB, which
#: the Invoke API states as 6291456 bytes.
PAYLOAD_LIMIT = 6 * 1024 * 1024
COLD_START_HEADER = "x-omi-cold-start"
#: A function runs at most 15 minutes; what bounds a request is the invocation's remaining time.
LAMBDA_MAX_SECONDS = 900.0
#: Of the remaining time, what is kept to encode and return a 504 before Lambda ends the invocation.
RETURN_MARGIN_SECONDS = 0.25

log = logging.getLogger("omi_lambda")
if log.level == logging.NOTSET:
    # The runtime's root logger passes WARNING and above only; the cold-start report is INFO.
    log.setLevel(logging.INFO)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_UNSUPPORTED = (
    "unsupported event: expected an HTTP event (API Gateway REST or HTTP API, ALB, Function URL) "
    "or an OIP inference request (an object with 'inputs')"
)


class _Front:
    """Wraps the OIP app: flags cold starts, and answers a refusal without running the app."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.cold = False
        self.refusal: OmiError | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        flag = (COLD_START_HEADER.encode(), b"true" if self.cold else b"false")
        refusal = self.refusal
        if refusal is None and (problem := _scope_problem(scope)):
            refusal = InvalidInputError(f"malformed HTTP event: {problem}")
        if refusal is not None:
            body = orjson.dumps({"error": refusal.message})
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), flag]
            await send({"type": "http.response.start", "status": HTTP_STATUS[refusal.code], "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def flagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), flag]}
            await send(message)

        timeout = remaining_seconds(scope.get("aws.context"))
        if timeout is not None:
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), TIMEOUT: timeout}}
        await self.app(scope, receive, flagged)


def remaining_seconds(context: Any) -> float | None:
    """What is left of the invocation's time (the Lambda context's), less the time to answer."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        millis = float(remaining())
    except (TypeError, ValueError):
        return None
    return max(0.0, millis / 1000 - RETURN_MARGIN_SECONDS)


def _scope_problem(scope: Scope) -> str | None:
    """What makes the request Mangum read from an event unservable, if anything.

    A real HTTP server never hands an application a method or path that is not text; Mangum
    copies whatever the event holds, and an odd value would fail deep inside the routing.
    """
    method, path = scope.get("method"), scope.get("path")
    if not isinstance(method, str) or not method.isalpha():
        return f"the HTTP method must be a word such as POST, got {method!r}"
    if not isinstance(path, str) or not path.startswith("/"):
        return f"the path must be text starting with '/', got {path!r}"
    return None


class LambdaFunction:
    """A Lambda handler ``(event, context) -> dict`` serving models over OIP.

    Args:
        models: the models to serve (one or several; names and versions must be unique).
        started: ``time.perf_counter()`` when INIT began (default: now), for the cold-start report.
        max_payload_bytes: requests and responses larger than this are refused with 413.
    """

    def __init__(
        self, models: Iterable[Model], *, started: float | None = None, max_payload_bytes: int = PAYLOAD_LIMIT
    ) -> None:
        started = time.perf_counter() if started is None else started
        #: Writes each invocation's requests as CloudWatch EMF lines (``OMI_EMF=off``: none).
        self.emf = EmfRecorder.from_env()
        self.dataplane = DataPlane(models, limits=Limits(request_timeout=LAMBDA_MAX_SECONDS), observer=self.emf)
        self.max_payload_bytes = max_payload_bytes
        # One loop per execution environment, made current before Mangum looks for one: Mangum
        # runs each request on the thread's current loop, and so do direct invocations.
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.front = _Front(build_app(self.dataplane, max_body_bytes=max_payload_bytes))
        self.mangum = Mangum(self.front, lifespan="off")
        self.dataplane.start()  # eager models load now, during INIT
        self.cold = True
        self.restored = False
        self.init_seconds = time.perf_counter() - started
        _register_snapstart_hooks(self)

    def __call__(self, event: Any, context: Any = None) -> dict[str, Any]:
        cold, self.cold = self.cold, False
        began = time.perf_counter()
        try:
            asyncio.set_event_loop(self.loop)
            if direct.is_inference_request(event):
                return direct.invoke(
                    self.dataplane, self.loop, event, cold, self.max_payload_bytes, remaining_seconds(context)
                )
            return self._http(event, context, cold)
        finally:
            if cold:
                self._report_cold_start(time.perf_counter() - began)
            if self.emf is not None:
                self.emf.write(cold, *invocation_ids(context))

    def _http(self, event: Any, context: Any, cold: bool) -> dict[str, Any]:
        try:
            self.mangum.infer(event, context)
        except Exception:  # noqa: BLE001 - Mangum's guess raises RuntimeError, or worse on odd shapes
            return direct.error_object(InvalidInputError(_UNSUPPORTED), cold)
        self.front.cold = cold
        try:
            size = _body_size(event)
            if size > self.max_payload_bytes:
                # Refused before the body is decoded or any model runs.
                self.front.refusal = PayloadTooLargeError(
                    f"request payload of {size} bytes exceeds Lambda's limit of {self.max_payload_bytes} bytes (6 MB)"
                )
                return self.mangum(_without_body(event), context)
            result = self.mangum(event, context)
            # The limit is on the answer as the runtime encodes it, the body a JSON string in it
            # (quotes and non-ASCII escaped), not on the body alone.
            size = len(json.dumps(result))
            if size > self.max_payload_bytes:
                self.front.refusal = PayloadTooLargeError(
                    f"the response of {size} bytes exceeds Lambda's limit of {self.max_payload_bytes} bytes "
                    "(6 MB); ask for fewer or smaller outputs, or use binary_data_output"
                )
                return self.mangum(_without_body(event), context)
            return result
        except Exception as exc:  # a malformed HTTP event: answer it, do not crash the runtime
            log.exception("cannot serve the HTTP event")
            body = orjson.dumps({"error": f"malformed HTTP event ({type(exc).__name__}: {exc})"}).decode()
            headers = {"content-type": "application/json", COLD_START_HEADER: "true" if cold else "false"}
            return {"statusCode": 400, "headers": headers, "body": body, "isBase64Encoded": False}
        finally:
            self.front.refusal = None

    def prepare_snapshot(self) -> None:
        """Load every model before a SnapStart snapshot, so that restored environments start warm."""
        for model in self.dataplane.models:
            try:
                model.load()
            except ModelLoadError:
                pass  # recorded: readiness and every request report it

    def restore(self) -> None:
        """After a SnapStart restore, the next invocation is this environment's first."""
        self.cold = True
        self.restored = True

    def _report_cold_start(self, seconds: float) -> None:
        loads = []
        for model in self.dataplane.models:
            if model.load_seconds is None:
                loads.append(f"{model.name} v{model.version} ({model.load_policy.value}) not loaded yet")
            else:
                loads.append(
                    f"{model.name} v{model.version} ({model.load_policy.value}) {model.state.value.lower()} "
                    f"in {model.load_seconds:.3f}s"
                )
        log.info(
            "omi-lambda cold start%s: init %.3fs, first invocation %.3fs; models: %s",
            " (restored from a SnapStart snapshot)" if self.restored else "",
            self.init_seconds,
            seconds,
            "; ".join(loads),
        )

    def close(self) -> None:
        """Stop the loop and its threads (for tests and embedders; Lambda just freezes the process)."""
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()
        self.dataplane.close()
        asyncio.set_event_loop(None)


def build_handler(
    model_or_models: Model | Iterable[Model], *, started: float | None = None, max_payload_bytes: int = PAYLOAD_LIMIT
) -> LambdaFunction:
    """A Lambda handler serving one model or several (the INIT work happens here).

    Raises:
        ConfigurationError: when what is given is not a model or a list of models.
    """
    if isinstance(model_or_models, Model):
        models = [model_or_models]
    elif isinstance(model_or_models, Iterable) and not isinstance(model_or_models, (str, bytes, Mapping)):
        models = list(model_or_models)
    else:
        raise ConfigurationError(
            f"build_handler needs a model made with @model, or a list of them, got {model_or_models!r}"
        )
    for item in models:
        if not isinstance(item, Model):
            raise ConfigurationError(f"build_handler needs models made with @model, got {type(item).__name__}")
    return LambdaFunction(models, started=started, max_payload_bytes=max_payload_bytes)


def handler_from_env(variable: str, *, started: float | None = None) -> LambdaFunction:
    """The handler for the models ``$variable`` names (``module:attr``, several separated by commas)."""
    started = time.perf_counter() if started is None else started
    spec = os.environ.get(variable, "")
    targets = [part.strip() for part in spec.split(",") if part.strip()]
    if not targets:
        raise ConfigurationError(
            f"${variable} is not set: set it to the model(s) to serve, as module:attr (several separated by commas)"
        )
    return build_handler(load_targets(targets), started=started)


def _body_size(event: Mapping[str, Any]) -> int:
    """The size the body takes in the invocation payload (base64 text when so encoded)."""
    body = event.get("body")
    if not body:
        return 0
    if isinstance(body, str):
        return len(body) if body.isascii() else len(body.encode("utf-8"))
    return len(body)


def _without_body(event: Mapping[str, Any]) -> dict[str, Any]:
    return {**event, "body": "", "isBase64Encoded": False}


def _register_snapstart_hooks(function: LambdaFunction) -> None:
    """With ``snapshot-restore-py`` installed (as in Lambda's Python runtimes), load before snapshots."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot  # type: ignore[import-untyped]
    except ImportError:
        return
    register_before_snapshot(function.prepare_snapshot)
    register_after_restore(function.restore)
