"""The FastAPI half of the REST front end: the documented routes, ``/docs``, ``/redoc`` and the
OpenAPI schema, and every path the fast ASGI callable of :mod:`omi_adapters.rest` does not take
(metadata, statistics). It is built on first use, or in a thread once the server listens, so
that importing FastAPI and pydantic (about half a second) is not part of the time to the first
answer: inference and health never need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from omi_adapters import __version__, repository, rest_docs
from omi_adapters.codecs import binary
from omi_adapters.errors import InvalidInputError, OmiError

if TYPE_CHECKING:
    from omi_adapters.rest import OipApp, Reply, _Endpoints

__all__ = ["build_api"]


def _response(reply: Reply) -> Response:
    status, headers, chunks = reply
    media = dict(headers).get(b"content-type", b"application/json").decode()
    extra = {k.decode(): v.decode() for k, v in headers if k != b"content-type"}
    return Response(b"".join(chunks), status_code=status, media_type=media, headers=extra)


def _json_object(body: bytes) -> dict[str, Any]:
    """A repository request's body: empty, or a JSON object."""
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInputError("the request body must be a JSON object")
    return value


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInputError("'parameters' must be a JSON object")
    return parameters


def build_api(endpoints: _Endpoints, app: OipApp) -> FastAPI:
    """The FastAPI application of ``app``, whose endpoints it shares."""
    from omi_adapters.rest import DOCS_ASSETS, _error

    # /docs and /redoc load Swagger UI and ReDoc from files installed with fastapi-offline, not
    # from a CDN: the pages work on an air-gapped cluster.
    api = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="omi-adapters: Open Inference Protocol",
        version=__version__,
        description="The Open Inference Protocol (KServe V2) REST API, with the binary tensor data extension.",
    )
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": rest_docs.ErrorResponse, "description": "Invalid request"},
        404: {"model": rest_docs.ErrorResponse, "description": "Unknown model or version"},
        503: {"model": rest_docs.ErrorResponse, "description": "Not ready"},
    }
    infer_errors: dict[int | str, dict[str, Any]] = {
        **errors,
        413: {"model": rest_docs.ErrorResponse, "description": "Body too large"},
        500: {"model": rest_docs.ErrorResponse, "description": "The model's predict raised"},
        504: {"model": rest_docs.ErrorResponse, "description": "The request's deadline passed"},
    }

    @api.exception_handler(OmiError)
    async def _omi_error(request: Request, exc: OmiError) -> Response:
        return _response(_error(exc))

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _response(_error(InvalidInputError(f"invalid request: {where}: {first.get('msg', 'invalid')}")))

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return Response(orjson.dumps({"error": detail}), status_code=exc.status_code, media_type="application/json")

    @api.get("/v2/health/live", response_model=rest_docs.LiveResponse, tags=["health"], summary="Server live")
    async def live() -> Response:
        return _response(endpoints.live())

    @api.get(
        "/v2/health/ready",
        response_model=rest_docs.ReadyResponse,
        responses={503: {"model": rest_docs.ReadyResponse, "description": "Not ready"}},
        tags=["health"],
        summary="Server ready",
    )
    async def ready() -> Response:
        return _response(endpoints.ready())

    @api.get("/v2", response_model=rest_docs.ServerMetadataResponse, tags=["metadata"], summary="Server metadata")
    async def server_metadata() -> Any:
        return endpoints.dataplane.server_metadata()

    api.add_api_route("/v2/", server_metadata, methods=["GET"], include_in_schema=False)

    @api.get("/v2/models", response_model=rest_docs.ModelListResponse, tags=["metadata"], summary="Model list")
    async def model_list() -> Any:
        return {"models": list(dict.fromkeys(m.name for m in endpoints.dataplane.models))}

    async def statistics(model_name: str | None = None, model_version: str | None = None) -> Any:
        observer = endpoints.dataplane.observer
        if getattr(observer, "collect_registry", None) is None:
            raise StarletteHTTPException(404, "statistics need the metrics (prometheus-client, omi serve --metrics)")
        from omi_adapters.statistics import model_statistics

        return {"model_stats": model_statistics(endpoints.dataplane, observer, model_name, model_version)}  # type: ignore[arg-type]

    # Before the metadata routes: "/v2/models/stats" is not a model named "stats".
    for path in (
        "/v2/models/stats",
        "/v2/models/{model_name}/stats",
        "/v2/models/{model_name}/versions/{model_version}/stats",
    ):
        api.add_api_route(
            path,
            statistics,
            methods=["GET"],
            response_model=rest_docs.ModelStatisticsResponse,
            responses=errors,
            tags=["statistics"],
            summary="Model statistics (Triton's statistics extension)",
        )

    # Triton's model configuration extension: the configuration omi build triton writes.
    async def model_config(model_name: str, model_version: str | None = None) -> Response:
        config = repository.served_config(endpoints.dataplane, model_name, model_version)
        return Response(orjson.dumps(config), media_type="application/json")

    for path in ("/v2/models/{model_name}/config", "/v2/models/{model_name}/versions/{model_version}/config"):
        api.add_api_route(
            path,
            model_config,
            methods=["GET"],
            responses={**errors, 200: {"description": "Triton's ModelConfig, in the JSON form Triton answers"}},
            tags=["metadata"],
            summary="Model configuration (Triton's model configuration extension)",
        )

    # Triton's model repository extension over the served models.
    @api.post(
        "/v2/repository/index",
        response_model=list[rest_docs.RepositoryIndexEntry],
        tags=["repository"],
        summary="Model repository index",
    )
    async def repository_index(request: Request) -> Response:
        body = _json_object(await request.body())
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInputError(f"'ready' must be true or false, got {ready!r}")
        entries = repository.index(endpoints.dataplane, ready=ready)
        return Response(orjson.dumps(entries), media_type="application/json")

    @api.post(
        "/v2/repository/models/{model_name}/load",
        responses=errors,
        tags=["repository"],
        summary="Load (or reload) a model: its load runs again",
    )
    async def repository_load(request: Request, model_name: str) -> Response:
        parameters = _parameters(_json_object(await request.body()))
        await repository.load(endpoints.dataplane, model_name, parameters)
        return Response(b"", media_type="application/json")

    @api.post(
        "/v2/repository/models/{model_name}/unload",
        responses=errors,
        tags=["repository"],
        summary="Unload a model: out of service until it is loaded again",
    )
    async def repository_unload(request: Request, model_name: str) -> Response:
        parameters = _parameters(_json_object(await request.body()))
        await repository.unload(endpoints.dataplane, model_name, parameters)
        return Response(b"", media_type="application/json")

    async def model_metadata(model_name: str, model_version: str | None = None) -> Any:
        return endpoints.dataplane.model_metadata(model_name, model_version)

    async def model_ready(model_name: str, model_version: str | None = None) -> Response:
        return _response(endpoints.model_ready(model_name, model_version))

    async def infer(request: Request, model_name: str, model_version: str | None = None) -> Response:
        # Reached only when the ASGI fast path did not take the request (it always does for POST);
        # kept so that the documented route is a working one.
        with endpoints.dataplane.admit(int(request.headers.get("content-length") or 0)):
            body = await request.body()
            header = request.headers.get(binary.HEADER)
            reply = await endpoints.infer(model_name, model_version, header.encode() if header else None, body)
        return _response(reply)

    async def generate(request: Request, model_name: str, model_version: str | None = None) -> Response:
        # Reached only when the ASGI fast path did not take the request (it always does for POST);
        # kept so that the documented route is a working one (rest_generate serves the real one).
        return await _generate(request, model_name, model_version, stream=False)

    async def generate_stream(request: Request, model_name: str, model_version: str | None = None) -> Response:
        return await _generate(request, model_name, model_version, stream=True)

    async def _generate(request: Request, model_name: str, model_version: str | None, *, stream: bool) -> Response:
        from omi_adapters.codecs import generate_json, sse

        dataplane = endpoints.dataplane
        model = dataplane.get(model_name, model_version)
        with dataplane.admit(int(request.headers.get("content-length") or 0)):
            decoded = generate_json.decode_request(await request.body(), model.inputs)
            if not stream:
                answer = await dataplane.run(model, decoded)
                return Response(generate_json.encode_response(answer), media_type="application/json")
            events = [sse.event(generate_json.encode_response(r)) async for r in dataplane.responses(model, decoded)]
        return Response(b"".join(events), media_type=sse.CONTENT_TYPE.decode())

    generate_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": (
                            "Triton's generate extension: a key naming an input is that input (a string, number, "
                            "boolean or list), 'id' the request's id, 'parameters' and any other key parameters."
                        ),
                        "additionalProperties": True,
                    }
                }
            },
        }
    }
    generate_errors = {
        **infer_errors,
        200: {
            "description": "One $generate_response: model_name, model_version, id and each output by name.",
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        },
    }
    stream_errors = {
        **infer_errors,
        200: {
            "description": (
                "Server-sent events: one 'data: {json}' event per response (each yield of a streaming model); "
                "an error after the first event is a last 'data: {\"error\": ...}' event."
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    }

    infer_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
                "application/octet-stream": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "A JSON header of Inference-Header-Content-Length bytes, then the binary data.",
                    }
                },
            },
        }
    }
    for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
        versioned = "versions" in prefix
        suffix = " (version)" if versioned else ""
        api.add_api_route(
            prefix,
            model_metadata,
            methods=["GET"],
            response_model=rest_docs.ModelMetadataResponse,
            responses=errors,
            tags=["metadata"],
            summary="Model metadata" + suffix,
        )
        api.add_api_route(
            prefix + "/ready",
            model_ready,
            methods=["GET"],
            response_model=rest_docs.ModelReadyResponse,
            responses=errors,
            tags=["health"],
            summary="Model ready" + suffix,
        )
        api.add_api_route(
            prefix + "/infer",
            infer,
            methods=["POST"],
            response_model=rest_docs.InferenceResponse,
            responses=infer_errors,
            tags=["inference"],
            summary="Inference" + suffix,
            openapi_extra=infer_body,
        )
        api.add_api_route(
            prefix + "/generate",
            generate,
            methods=["POST"],
            responses=generate_errors,
            tags=["generate"],
            summary="Generate, one response (Triton's generate extension)" + suffix,
            openapi_extra=generate_doc,
        )
        api.add_api_route(
            prefix + "/generate_stream",
            generate_stream,
            methods=["POST"],
            responses=stream_errors,
            tags=["generate"],
            summary="Generate, server-sent events (Triton's generate extension)" + suffix,
            openapi_extra=generate_doc,
        )

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
            # The request body is documented, not parsed by FastAPI: add its schema by hand.
            doc = rest_docs.InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(doc.pop("$defs", {}))
            components["InferenceRequest"] = doc
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api
