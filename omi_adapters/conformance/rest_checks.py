"""The REST checks: what the Open Inference Protocol's REST API (and Triton's extensions a server lists) require.

Sources: the OIP's ``inference_rest.md`` and its OpenAPI document ``open_inference_rest.yaml``
(KServe's ``rest_predict_v2.yaml``), KServe's ``required_api.md``, and Triton's protocol
extension documents (binary tensor data, model repository, statistics, model configuration).
"""

from __future__ import annotations

import functools
import math
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omi_adapters.conformance.models import ModelMeta, Models, parse_metadata
from omi_adapters.conformance.report import FAIL, PASS, SKIP, Report
from omi_adapters.conformance.rest_client import Answer, CallFailed, RestClient
from omi_adapters.conformance.rest_messages import (
    binary_body,
    binary_inputs,
    describe_outputs,
    error_problem,
    json_inputs,
    json_object,
    read_reply,
)
from omi_adapters.conformance.tensors import concrete_shape, wrong_datatype

__all__ = ["UNKNOWN_MODEL", "run_rest"]

PROTOCOL = "rest"
#: A model name no server serves, for the unknown-model checks.
UNKNOWN_MODEL = "omi-check-no-such-model"
_BINARY = "binary_tensor_data"


def _q(segment: str) -> str:
    """A model name or version as one path segment (a name may hold ``/`` or spaces)."""
    return urllib.parse.quote(segment, safe="")


class _Stop(Exception):
    """The server cannot be reached: the rest of its checks are skipped."""


def run_rest(client: RestClient, report: Report, model_names: Sequence[str]) -> Models:
    """Run every REST check against ``client``'s server; returns the models found, for the other protocols."""
    checks = _RestChecks(client, report)
    try:
        return checks.run(model_names)
    except _Stop as stop:
        report.add(PROTOCOL, "remaining checks", SKIP, f"not run: {stop}")
        return Models()


class _RestChecks:
    def __init__(self, client: RestClient, report: Report) -> None:
        self.client = client
        self.report = report
        self.extensions: list[str] = []

    def add(self, check: str, outcome: Any, detail: str) -> None:
        self.report.add(PROTOCOL, check, outcome, detail)

    def run(self, model_names: Sequence[str]) -> Models:
        self.health("server live", "/v2/health/live", "live", first=True)
        self.health("server ready", "/v2/health/ready", "ready")
        self.server_metadata()
        models = self.model_list(model_names)
        for name in models.names:
            meta = self.model_metadata(name)
            if meta is None:
                continue
            models.metadata[name] = meta
            self.model_checks(meta)
        self.unknown_model()
        self.malformed_json(models.names[0] if models.names else None)
        self.statistics(models.names)
        return models

    # -- server ----------------------------------------------------------------------------------

    def call(self, check: str, do: Callable[[], Answer], first: bool = False) -> Answer | None:
        """Make one call; a call that gets no answer is a FAIL row (and, on the first call, the end)."""
        try:
            return do()
        except CallFailed as exc:
            self.add(check, FAIL, str(exc))
            if first:
                raise _Stop(f"{self.client.base} did not answer") from None
            return None

    def health(self, check: str, path: str, field: str, first: bool = False) -> None:
        """200 means true (KServe's ``required_api.md``); a JSON body, when there is one, must agree."""
        answer = self.call(check, lambda: self.client.get(path), first)
        if answer is None:
            return
        if answer.status != 200:
            self.add(check, FAIL, f"GET {path}: expected 200, got {answer.describe()}")
            return
        if answer.body.strip():
            try:
                doc = answer.json()
            except ValueError:
                doc = None  # the body "should be empty"; text is tolerated, the status decides
            if isinstance(doc, Mapping) and doc.get(field) is False:
                self.add(check, FAIL, f"GET {path}: 200 but the body says {field}=false: {answer.excerpt()}")
                return
        self.add(check, PASS, f"GET {path}: 200")

    def server_metadata(self) -> None:
        """``$metadata_server_response``: ``name``, ``version`` and ``extensions`` are all required."""
        check = "server metadata"
        answer = self.call(check, lambda: self.client.get("/v2"))
        if answer is None:
            return
        doc = json_object(answer)
        if answer.status != 200 or doc is None:
            self.add(check, FAIL, f"GET /v2: expected 200 with a JSON object, got {answer.describe()}")
            return
        problems = [
            f"{k} is {doc.get(k)!r}, not a string" for k in ("name", "version") if not isinstance(doc.get(k), str)
        ]
        extensions = doc.get("extensions")
        if not isinstance(extensions, list) or not all(isinstance(e, str) for e in extensions):
            problems.append(f"extensions is {extensions!r}, not a list of strings")
        else:
            self.extensions = extensions
        if problems:
            self.add(check, FAIL, "GET /v2: " + "; ".join(problems))
            return
        self.add(check, PASS, f"name={doc['name']!r} version={doc['version']!r} extensions={extensions}")

    def model_list(self, model_names: Sequence[str]) -> Models:
        """The OIP has no list endpoint: ``--model`` names them, else Triton's repository index if listed."""
        models = Models(list(dict.fromkeys(model_names)), "--model")
        if "model_repository" in self.extensions:
            indexed = self.repository_index(use=not models.names)
            if not models.names:
                models.names, models.source = indexed, "the repository index"
        elif not models.names:
            self.add(
                "models",
                SKIP,
                "the OIP has no endpoint that lists models and the server does not list the model_repository "
                "extension: name the models to check with --model NAME (repeatable)",
            )
        return models

    def repository_index(self, use: bool) -> list[str]:
        """Triton's ``POST /v2/repository/index``: a list of ``{"name", "version", "state", "reason"}``."""
        check = "repository index"
        answer = self.call(check, lambda: self.client.post_json("/v2/repository/index", {}))
        if answer is None:
            return []
        try:
            doc = answer.json()
        except ValueError:
            doc = None
        entries = doc if isinstance(doc, list) else None
        if answer.status != 200 or entries is None or not all(isinstance(e, Mapping) for e in entries):
            self.add(
                check, FAIL, f"POST /v2/repository/index: expected 200 with a list of objects, got {answer.describe()}"
            )
            return []
        unnamed = [e for e in entries if not isinstance(e.get("name"), str)]
        if unnamed:
            self.add(check, FAIL, f"entries without a string name: {unnamed[:3]}")
            return []
        ready = [e["name"] for e in entries if e.get("state", "READY") == "READY"]
        others = {e["name"]: e for e in entries if e["name"] not in ready}
        self.add(check, PASS, f"{len(entries)} entries, ready: {', '.join(dict.fromkeys(ready)) or 'none'}")
        if use:
            for name, entry in others.items():
                reason = f" ({entry.get('reason')})" if entry.get("reason") else ""
                self.add(f"model {name}", SKIP, f"not checked: its state is {entry.get('state')!r}{reason}")
        return list(dict.fromkeys(ready))

    # -- one model -------------------------------------------------------------------------------

    def model_metadata(self, name: str) -> ModelMeta | None:
        check = f"model metadata [{name}]"
        answer = self.call(check, lambda: self.client.get(f"/v2/models/{_q(name)}"))
        if answer is None:
            return None
        if answer.status != 200:
            self.add(check, FAIL, f"GET /v2/models/{_q(name)}: expected 200, got {answer.describe()}")
            return None
        try:
            meta, problems = parse_metadata(answer.json(), name)
        except ValueError as exc:
            meta, problems = None, [str(exc)]
        if problems or meta is None:
            self.add(check, FAIL, "; ".join(problems))
            return None
        tensors = ", ".join(t.describe() for t in meta.inputs) + " -> " + ", ".join(t.describe() for t in meta.outputs)
        self.add(check, PASS, f"platform={meta.platform!r} versions={list(meta.versions)} {tensors}")
        return meta

    def model_checks(self, meta: ModelMeta) -> None:
        name = meta.name
        self.ready(f"model ready [{name}]", f"/v2/models/{_q(name)}/ready")
        if reason := meta.cannot_generate(self.client.max_body):
            self.add(f"inference [{name}]", SKIP, reason)
            if "model_configuration" in self.extensions:
                self.model_config(name)
            return
        reply = self.infer_json(meta)
        self.request_id(meta, reply)
        self.versioned(meta)
        self.binary_output(meta)
        self.binary_input(meta)
        self.bad_input(meta, "wrong datatype")
        self.bad_input(meta, "wrong shape")
        if "model_configuration" in self.extensions:
            self.model_config(name)

    def ready(self, check: str, path: str) -> bool:
        answer = self.call(check, lambda: self.client.get(path))
        if answer is None:
            return False
        doc = json_object(answer)
        if answer.status != 200 or (doc is not None and doc.get("ready") is False):
            self.add(check, FAIL, f"GET {path}: expected 200 (ready), got {answer.describe()}")
            return False
        self.add(check, PASS, f"GET {path}: 200")
        return True

    def infer_json(self, meta: ModelMeta) -> tuple[str, dict[str, Any]] | None:
        """Inference in JSON with generated inputs; the reply must match the metadata. Returns (id sent, reply)."""
        check = f"infer JSON [{meta.name}]"
        path = f"/v2/models/{_q(meta.name)}/infer"
        if not meta.json_safe:
            self.add(check, SKIP, "an FP16 or BF16 input has no JSON form (the OIP's REST API): see the binary rows")
            return None
        request_id = f"omi-check-{uuid.uuid4().hex[:12]}"
        request = {"id": request_id, "inputs": json_inputs(meta)}
        answer = self.call(check, lambda: self.client.post_json(path, request))
        if answer is None:
            return None
        reply, problems = read_reply(meta, answer)
        if problems or reply is None:
            self.add(check, FAIL, f"POST {path}: " + "; ".join(problems))
        else:
            self.add(check, PASS, f"POST {path}: 200, {describe_outputs(reply)}")
        return None if reply is None else (request_id, reply)

    def request_id(self, meta: ModelMeta, sent: tuple[str, Mapping[str, Any]] | None) -> None:
        """``id``: "if the request has one, the response must echo it" (the OIP's REST API)."""
        check = f"request id [{meta.name}]"
        if sent is None:
            self.add(check, SKIP, "no JSON inference reply to look at")
            return
        request_id, reply = sent
        if reply.get("id") != request_id:
            self.add(check, FAIL, f"sent id {request_id!r}, the reply has id {reply.get('id')!r}")
        else:
            self.add(check, PASS, f"id {request_id!r} echoed")

    def versioned(self, meta: ModelMeta) -> None:
        """The OpenAPI document declares the ``/versions/{v}`` forms of metadata, ready and infer."""
        check = f"versioned paths [{meta.name}]"
        if not meta.versions:
            self.add(check, SKIP, "the metadata lists no versions")
            return
        version = meta.versions[0]
        base = f"/v2/models/{_q(meta.name)}/versions/{_q(version)}"
        problems = []
        for path in (base, f"{base}/ready"):
            answer = self.call(check, functools.partial(self.client.get, path))
            if answer is None:
                return
            doc = json_object(answer)
            if answer.status != 200:
                problems.append(f"GET {path}: {answer.describe()}")
            elif path == base and (doc is None or doc.get("name") != meta.name):
                problems.append(f"GET {path}: not metadata named {meta.name!r}: {answer.excerpt()}")
        if meta.json_safe:
            request = {"inputs": json_inputs(meta)}
            answer = self.call(check, lambda: self.client.post_json(f"{base}/infer", request))
            if answer is None:
                return
            reply, infer_problems = read_reply(meta, answer)
            problems += [f"POST {base}/infer: {p}" for p in infer_problems]
            if reply is not None and reply.get("model_version", version) != version:
                problems.append(f"POST {base}/infer: model_version {reply.get('model_version')!r}, asked {version!r}")
        if problems:
            self.add(check, FAIL, "; ".join(problems))
        else:
            self.add(check, PASS, f"{base}: metadata, ready" + (", infer" if meta.json_safe else "") + " answered")

    # -- Triton's binary tensor data extension -------------------------------------------------------

    def binary_output(self, meta: ModelMeta) -> None:
        """``binary_data_output``: every output comes back as raw bytes after the JSON header."""
        check = f"binary output [{meta.name}]"
        if _BINARY not in self.extensions:
            self.add(check, SKIP, f"the server does not list {_BINARY}")
            return
        path = f"/v2/models/{_q(meta.name)}/infer"
        # Binary outputs alone where the inputs can be JSON: the binary input row checks those.
        parameters = {"binary_data_output": True}
        if meta.json_safe:
            request = {"inputs": json_inputs(meta), "parameters": parameters}
            answer = self.call(check, lambda: self.client.post_json(path, request))
        else:
            header = {"inputs": binary_inputs(meta), "parameters": parameters}
            answer = self.call(check, lambda: self._post_binary(path, header, meta))
        if answer is None:
            return
        reply, problems = read_reply(meta, answer, binary=True)
        if problems or reply is None:
            self.add(check, FAIL, f"POST {path}: " + "; ".join(problems))
            return
        self.add(check, PASS, f"POST {path}: 200, {describe_outputs(reply)}, binary")

    def binary_input(self, meta: ModelMeta) -> None:
        """Inputs as raw bytes (``binary_data_size``) with ``Inference-Header-Content-Length``; a JSON reply."""
        check = f"binary input [{meta.name}]"
        if _BINARY not in self.extensions:
            self.add(check, SKIP, f"the server does not list {_BINARY}")
            return
        path = f"/v2/models/{_q(meta.name)}/infer"
        answer = self.call(check, lambda: self._post_binary(path, {"inputs": binary_inputs(meta)}, meta))
        if answer is None:
            return
        reply, problems = read_reply(meta, answer)
        if problems or reply is None:
            self.add(check, FAIL, f"POST {path}: " + "; ".join(problems))
            return
        self.add(check, PASS, f"POST {path}: 200, {describe_outputs(reply)}")

    def _post_binary(self, path: str, header: Mapping[str, Any], meta: ModelMeta) -> Answer:
        body, headers = binary_body(header, meta)
        return self.client.request("POST", path, body, headers)

    # -- errors ------------------------------------------------------------------------------------

    def bad_input(self, meta: ModelMeta, check_name: str) -> None:
        """An input of the wrong datatype, or of the wrong rank, is the client's error: 400 ``{"error"}``."""
        check = f"{check_name} [{meta.name}]"
        inputs = json_inputs(meta)
        first = meta.inputs[0]
        shape = concrete_shape(first.shape)
        if check_name == "wrong datatype":
            datatype, element = wrong_datatype(first.datatype)
            inputs[0] = {"name": first.name, "datatype": datatype, "shape": shape, "data": element * math.prod(shape)}
            what = f"{first.name} as {datatype} {shape} (declared {first.datatype})"
        else:
            inputs[0] = {**inputs[0], "shape": [*shape, 1]}
            what = f"{first.name} as {first.datatype} {[*shape, 1]} (declared {list(first.shape)})"
        path = f"/v2/models/{_q(meta.name)}/infer"
        answer = self.call(check, lambda: self.client.post_json(path, {"inputs": inputs}))
        if answer is not None:
            self.expect_error(check, f"POST {path} with {what}", answer, (400,))

    def expect_error(self, check: str, what: str, answer: Answer, statuses: Sequence[int]) -> None:
        problem = error_problem(answer, statuses)
        if problem:
            self.add(check, FAIL, f"{what}: {problem}")
        else:
            self.add(check, PASS, f'{what}: {answer.status} {{"error": ...}}')

    def unknown_model(self) -> None:
        """An unknown model: a 4xx with ``{"error": string}`` (KServe answers 404; Triton 400, the OIP's "typically 400")."""
        check = "unknown model"
        problems, statuses = [], []
        path = f"/v2/models/{UNKNOWN_MODEL}"
        request = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
        for what, do in (
            (f"GET {path}", lambda: self.client.get(path)),
            (f"POST {path}/infer", lambda: self.client.post_json(f"{path}/infer", request)),
        ):
            answer = self.call(check, do)
            if answer is None:
                return
            problem = error_problem(answer, (400, 404))
            if problem:
                problems.append(f"{what}: {problem}")
            statuses.append(str(answer.status))
        if problems:
            self.add(check, FAIL, "; ".join(problems))
        else:
            self.add(check, PASS, f'metadata and infer of {UNKNOWN_MODEL!r}: {"/".join(statuses)} {{"error": ...}}')

    def malformed_json(self, name: str | None) -> None:
        check = "malformed JSON"
        if name is None:
            self.add(check, SKIP, "needs a model to send it to")
            return
        path = f"/v2/models/{_q(name)}/infer"
        body = b'{"inputs": [{"name": '
        answer = self.call(check, lambda: self.client.request("POST", path, body, {"Content-Type": "application/json"}))
        if answer is None:
            return
        what = f"POST {path} with {body.decode()!r}"
        if answer.status < 400:
            self.add(check, FAIL, f'{what}: expected an error status with {{"error": string}}, got {answer.describe()}')
            return
        # The OIP asks for an HTTP error status, "typically 400", with {"error": string}: another
        # error status (Triton answers 500, KServe 422) conforms, and the row says which it was.
        problem = error_problem(answer, (answer.status,))
        if problem:
            self.add(check, FAIL, f"{what}: {problem}")
        else:
            typical = "" if answer.status == 400 else " (an error status as the OIP asks; 400 is the typical one)"
            self.add(check, PASS, f'{what}: {answer.status} {{"error": ...}}{typical}')

    # -- Triton's other extensions, checked for shape only ------------------------------------------------

    def statistics(self, names: Sequence[str]) -> None:
        """Triton's statistics extension: ``GET /v2/models/stats`` -> ``{"model_stats": [{"name", ...}, ...]}``."""
        check = "statistics"
        if "statistics" not in self.extensions:
            self.add(check, SKIP, "the server does not list statistics")
            return
        path = "/v2/models/stats"
        answer = self.call(check, lambda: self.client.get(path))
        if answer is None:
            return
        doc = json_object(answer)
        stats = doc.get("model_stats") if doc is not None else None
        if answer.status != 200 or not isinstance(stats, list) or not all(isinstance(s, Mapping) for s in stats):
            self.add(check, FAIL, f"GET {path}: expected 200 with a model_stats list, got {answer.describe()}")
            return
        named = {s.get("name") for s in stats}
        problems = [
            f"{s.get('name')!r}: inference_stats is missing"
            for s in stats
            if not isinstance(s.get("inference_stats"), Mapping)
        ]
        problems += [f"{n!r} is not in model_stats" for n in names if n not in named]
        if problems:
            self.add(check, FAIL, f"GET {path}: " + "; ".join(problems))
        else:
            self.add(check, PASS, f"GET {path}: {len(stats)} models' statistics")

    def model_config(self, name: str) -> None:
        """Triton's model configuration extension: ``GET /v2/models/{m}/config`` -> a ``ModelConfig`` object."""
        check = f"model config [{name}]"
        path = f"/v2/models/{_q(name)}/config"
        answer = self.call(check, lambda: self.client.get(path))
        if answer is None:
            return
        doc = json_object(answer)
        if answer.status != 200 or doc is None:
            self.add(check, FAIL, f"GET {path}: expected 200 with a JSON object, got {answer.describe()}")
        elif doc.get("name", name) != name:
            self.add(check, FAIL, f"GET {path}: the configuration is named {doc.get('name')!r}")
        else:
            self.add(check, PASS, f"GET {path}: 200, a configuration object")
