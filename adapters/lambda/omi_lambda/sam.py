"""The deployment descriptions of a Lambda bundle: a SAM template and a Containerfile.

The template is built as data and written with PyYAML (no text templates): one
``AWS::Serverless::Function`` (AWS SAM specification, "AWS::Serverless::Function") with the
handler, runtime, memory, timeout and ``OMI_MODEL``; an HTTP API event (payload format 2.0,
which carries binary bodies as base64 without extra settings) and a Function URL.
Intrinsic functions use their long form (``Fn::Sub``) so that plain YAML stays valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["CODE_DIR", "FUNCTION_ID", "HANDLER", "FunctionSpec", "containerfile", "template", "template_yaml"]

HANDLER = "omi_lambda.handler"
FUNCTION_ID = "ModelFunction"
#: The folder of the bundle holding the function's code (the template's CodeUri).
CODE_DIR = "function"


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about the function."""

    description: str
    omi_model: str
    python: str = "3.12"
    architecture: str = "x86_64"
    memory: int = 1024
    timeout: int = 30
    url_auth: str = "AWS_IAM"
    snapstart: bool = False


def template(spec: FunctionSpec) -> dict[str, Any]:
    """The SAM template as data."""
    properties: dict[str, Any] = {
        "CodeUri": f"{CODE_DIR}/",
        "Handler": HANDLER,
        "Runtime": f"python{spec.python}",
        "Architectures": [spec.architecture],
        "MemorySize": spec.memory,
        "Timeout": spec.timeout,
        "Environment": {"Variables": {"OMI_MODEL": spec.omi_model}},
        "FunctionUrlConfig": {"AuthType": spec.url_auth},
        "Events": {
            # Every path and method of the API goes to the function; the OIP app routes them.
            "HttpApi": {"Type": "HttpApi", "Properties": {"Path": "/{proxy+}", "Method": "ANY"}},
        },
    }
    if spec.snapstart:
        # SnapStart snapshots published versions; the alias is what the events invoke.
        properties["SnapStart"] = {"ApplyOn": "PublishedVersions"}
        properties["AutoPublishAlias"] = "live"
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": spec.description,
        "Resources": {FUNCTION_ID: {"Type": "AWS::Serverless::Function", "Properties": properties}},
        "Outputs": {
            "HttpApiUrl": {
                "Description": "The OIP REST API through API Gateway (HTTP API)",
                "Value": {"Fn::Sub": "https://${ServerlessHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"},
            },
            "FunctionUrl": {
                "Description": "The OIP REST API through the function URL",
                "Value": {"Fn::GetAtt": [f"{FUNCTION_ID}Url", "FunctionUrl"]},
            },
            "FunctionName": {"Description": "For direct invocations", "Value": {"Ref": FUNCTION_ID}},
        },
    }


def template_yaml(spec: FunctionSpec) -> str:
    """The SAM template as YAML text."""
    return yaml.safe_dump(template(spec), sort_keys=False, default_flow_style=False, width=120)


def containerfile(spec: FunctionSpec) -> str:
    """A Containerfile for a Lambda container image on AWS's Python base image.

    The base image carries the runtime interface client and, for local runs, the emulator.
    Dependencies are installed first (a layer that changes rarely), the code copied last.
    """
    return (
        f"# A Lambda container image of {spec.description}\n"
        "# Build: podman build -t omi-lambda -f Containerfile .  (or docker build)\n"
        "# Run locally: podman run -p 9000:8080 omi-lambda, then POST an event to\n"
        "#   http://localhost:9000/2015-03-31/functions/function/invocations\n"
        f"FROM public.ecr.aws/lambda/python:{spec.python}\n"
        f"COPY {CODE_DIR}/requirements.txt ${{LAMBDA_TASK_ROOT}}/requirements.txt\n"
        'RUN pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/requirements.txt" --target "${LAMBDA_TASK_ROOT}"\n'
        f"COPY {CODE_DIR}/ ${{LAMBDA_TASK_ROOT}}/\n"
        f"ENV OMI_MODEL={json.dumps(spec.omi_model)}\n"
        f'CMD ["{HANDLER}"]\n'
    )
