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


def test_docs_page_is_served(server: Served) -> None:
    response = httpx.get(f"http://{server.http_url}/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
