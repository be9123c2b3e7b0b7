"""HTTP events as AWS writes them: the sample events of the aws-sam-cli wheel, filled in.

The samples are templates (``{{{path}}}``, ``{{{method}}}``, ``{{{body}}}`` as base64, ...) and
carry no content-type header; a test adds one when it wants one.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

#: Event kind -> the sample's file under the wheel's ``events/`` folder.
SAMPLES = {
    "http-api": "apigateway/HttpApi.json",
    "rest-api": "apigateway/AwsProxy.json",
    "alb": "alb/ALBRequest.json",
}

_FIXED = {
    "account_id": "123456789012",
    "dns_suffix": "amazonaws.com",
    "stage": "prod",
    "resource": "/{proxy+}",
    "querystringparameters": "",
}
_PLACEHOLDER = re.compile(r"\{\{\{(\w+)\}\}\}")


def http_event(
    events_dir: Path,
    kind: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The sample event of ``kind`` for ``method path`` with ``body`` and extra ``headers``."""
    values = {**_FIXED, "method": method, "path": path.lstrip("/"), "body": base64.b64encode(body).decode()}

    def fill(match: re.Match[str]) -> str:
        return json.dumps(values[match.group(1)])[1:-1]  # the value, escaped as JSON string text

    event: dict[str, Any] = json.loads(_PLACEHOLDER.sub(fill, (events_dir / SAMPLES[kind]).read_text()))
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        if "multiValueHeaders" in event:
            event["multiValueHeaders"][name] = [value]
    return event


def response_body(response: dict[str, Any]) -> bytes:
    """The body of a Lambda HTTP response, base64 decoded when so marked."""
    body = response.get("body", "")
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    """The response's headers, lower-cased, from ``headers`` or ``multiValueHeaders``."""
    found = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        found[name.lower()] = ",".join(values)
    return found
