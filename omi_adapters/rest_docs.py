"""Pydantic models that document the OIP REST bodies (the OIP REST protocol's JSON objects) in OpenAPI and /docs.

They describe the wire format only: the inference hot path never builds them (tensor data is
decoded by :mod:`omi_adapters.codecs` with orjson and numpy).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from omi_adapters.types import DATATYPES

Parameter = bool | int | float | str
_DATATYPES = ", ".join(DATATYPES)


class ErrorResponse(BaseModel):
    """Every failure: an HTTP 4xx/5xx status with this body (the OIP's error response)."""

    error: str = Field(description="What went wrong, naming the model, tensor or field at fault.")


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ServerMetadataResponse(BaseModel):
    """``$metadata_server_response``."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """``$metadata_tensor``."""

    name: str
    datatype: str = Field(description=f"One of {_DATATYPES}.")
    shape: list[int] = Field(description="-1 marks a variable dimension.")


class ModelMetadataResponse(BaseModel):
    """``$metadata_model_response``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelListResponse(BaseModel):
    """The served models' names (KServe's ``GET /v2/models``)."""

    models: list[str]


class StatisticDuration(BaseModel):
    count: int = Field(description="How many.")
    ns: int = Field(description="Their cumulative duration in nanoseconds.")


class InferStatistics(BaseModel):
    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    cache_hit: StatisticDuration
    cache_miss: StatisticDuration


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch of the last answered request (0: none).")
    inference_count: int = Field(description="Rows predicted (a batch of n counts n).")
    execution_count: int = Field(description="Predict calls.")
    inference_stats: InferStatistics
    response_stats: dict[str, Any] = Field(default_factory=dict)
    batch_stats: list[Any] = Field(default_factory=list)
    memory_usage: list[Any] = Field(default_factory=list)


class ModelStatisticsResponse(BaseModel):
    """Triton's statistics extension: the figures of the Prometheus metrics, summed over protocols."""

    model_stats: list[ModelStatistics]


class RequestInput(BaseModel):
    """``$request_input``."""

    name: str
    shape: list[int]
    datatype: str = Field(description=f"One of {_DATATYPES}.")
    parameters: dict[str, Parameter] | None = Field(
        default=None, description="`binary_data_size` when the tensor's bytes follow the JSON header (binary data)."
    )
    data: Any = Field(
        default=None, description="Row-major values, flat or nested; BYTES as UTF-8 strings. Absent with binary data."
    )


class RequestOutput(BaseModel):
    """``$request_output``."""

    name: str
    parameters: dict[str, Parameter] | None = Field(
        default=None,
        description="`binary_data: true` asks for this output as binary data (binary tensor data extension).",
    )


class InferenceRequest(BaseModel):
    """``$inference_request``; sent as JSON, or as a JSON header plus binary tensor data when the
    ``Inference-Header-Content-Length`` header is present (the binary tensor data extension)."""

    id: str | None = None
    parameters: dict[str, Parameter] | None = Field(
        default=None, description="`binary_data_output: true` asks for every output as binary data."
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(default=None, description="Omitted: every output.")


class ResponseOutput(BaseModel):
    """``$response_output``."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Parameter] | None = None
    data: list[Any] | None = Field(default=None, description="Flat, row-major. Absent for binary outputs.")


class InferenceResponse(BaseModel):
    """``$inference_response``."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Parameter] | None = None
    outputs: list[ResponseOutput]


class RepositoryIndexEntry(BaseModel):
    """One model version of ``POST /v2/repository/index`` (Triton's model repository extension)."""

    name: str
    version: str
    state: str = Field(description="READY, LOADING or UNAVAILABLE")
    reason: str | None = Field(None, description="Why the model is in this state (left out when there is none)")
