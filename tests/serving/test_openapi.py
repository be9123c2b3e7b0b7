"""The OpenAPI document validates and documents every OIP endpoint with its real bodies."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate

from tests.servers import Served

OIP_PATHS = {
    "/v2/health/live": "get",
    "/v2/health/ready": "get",
    "/v2": "get",
    "/v2/models": "get",
    "/v2/models/{model_name}": "get",
    "/v2/models/{model_name}/versions/{model_version}": "get",
    "/v2/models/{model_name}/ready": "get",
    "/v2/models/{model_name}/versions/{model_version}/ready": "get",
    "/v2/models/{model_name}/infer": "post",
    "/v2/models/{model_name}/versions/{model_version}/infer": "post",
    "/v2/models/{model_name}/generate": "post",
    "/v2/models/{model_name}/versions/{model_version}/generate": "post",
    "/v2/models/{model_name}/generate_stream": "post",
    "/v2/models/{model_name}/versions/{model_version}/generate_stream": "post",
}


@pytest.fixture(scope="module")
def document(server: Served) -> dict:
    response = httpx.get(f"http://{server.http_url}/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_openapi_document_validates(document: dict) -> None:
    validate(document)


def test_every_oip_endpoint_is_documented(document: dict) -> None:
    for path, method in OIP_PATHS.items():
        assert method in document["paths"].get(path, {}), f"{method.upper()} {path} is not documented"


def test_infer_documents_request_response_and_errors(document: dict) -> None:
    operation = document["paths"]["/v2/models/{model_name}/infer"]["post"]
    content = operation["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/InferenceRequest"}
    assert "application/octet-stream" in content
    schemas = document["components"]["schemas"]
    assert {"name", "shape", "datatype", "data"} <= set(schemas["RequestInput"]["properties"])
    assert "outputs" in schemas["InferenceResponse"]["properties"]
    for status in ("400", "404", "503", "500"):
        ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse")


def test_generate_stream_documents_its_event_stream(document: dict) -> None:
    operation = document["paths"]["/v2/models/{model_name}/generate_stream"]["post"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"


def test_the_documented_generate_routes_work_behind_the_fast_path() -> None:
    """FastAPI's generate routes (which the fast path always takes first) answer as the served ones."""
    import asyncio

    from omi_adapters.dataplane import DataPlane
    from omi_adapters.rest import build_app
    from omi_adapters.targets import load_target
    from tests.conftest import EXAMPLES

    plane = DataPlane(load_target(str(EXAMPLES / "adder.py")))
    plane.start()
    api = build_app(plane).api()

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://omi") as client:
            one = await client.post("/v2/models/adder/generate", json={"X": [[1, 2]]})
            events = await client.post("/v2/models/adder/versions/1/generate_stream", json={"X": [[1, 2]]})
            return one, events

    one, events = asyncio.run(main())
    assert one.json() == {"model_name": "adder", "model_version": "1", "Y": [2.0, 3.0]}
    assert events.headers["content-type"].startswith("text/event-stream")
    assert events.text == 'data: {"model_name":"adder","model_version":"1","Y":[2.0,3.0]}\n\n'


def test_docs_page_is_served(server: Served) -> None:
    response = httpx.get(f"http://{server.http_url}/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
