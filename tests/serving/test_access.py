"""Access control end to end: the bearer token on REST, OIP gRPC and OMI, the origin check and
CORS, TLS, with real ``omi serve`` processes on loopback driven by tritonclient, httpx and
grpcio; plus the checks of :mod:`omi_adapters.access` in-process.

The project's own ``inference`` protobuf module is never imported here (tritonclient's is).
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from omi_adapters.access import AccessGate, check_origins, load_tls, load_token, rest_open
from omi_adapters.errors import ConfigurationError
from omi_adapters.grpc_access import TokenInterceptor
from omi_adapters.protos import modzy_model_pb2 as omi_pb
from omi_adapters.protos import modzy_model_pb2_grpc as omi_grpc
from tests.conftest import ROOT
from tests.servers import Served, free_port, serve

pytestmark = pytest.mark.timeout(120)

MODELS = "tests/serving/access_models.py"
TOKEN = "omi-test-" + secrets.token_urlsafe(18)
WRONG = "omi-wrong-" + secrets.token_urlsafe(18)
# tritonclient adds its own headers to the dict it is given: pass it copies of these.
GOOD_HTTP = {"Authorization": f"Bearer {TOKEN}"}
GOOD_GRPC = {"authorization": f"Bearer {TOKEN}"}  # gRPC metadata keys are lower case
GOOD_METADATA = (("authorization", f"Bearer {TOKEN}"),)
INFER = "/v2/models/counted/infer"
BODY = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
SERVING = health_pb2.HealthCheckResponse.SERVING
MISSING = "requires a bearer token"
INVALID = "not valid for this server"


def _http_input() -> httpclient.InferInput:
    tensor = httpclient.InferInput("X", [1, 2], "FP32")
    tensor.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))
    return tensor


def _grpc_input() -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("X", [1, 2], "FP32")
    tensor.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))
    return tensor


def _calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def authed() -> Iterator[Served]:
    """REST and OIP gRPC with the token from ``$OMI_AUTH_TOKEN``."""
    with serve(MODELS, protocols=("rest", "grpc"), env={"OMI_AUTH_TOKEN": TOKEN}) as served:
        served.wait_ready()  # readiness needs no token
        yield served


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


# --- REST ----------------------------------------------------------------------------------------


def test_rest_tritonclient_is_refused_without_the_token_and_served_with_it(authed: Served) -> None:
    client = httpclient.InferenceServerClient(authed.http_url, network_timeout=30)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("counted") and client.is_model_ready("counted", "1")
        for headers, says in ((None, MISSING), ({"Authorization": f"Bearer {WRONG}"}, INVALID)):
            with pytest.raises(InferenceServerException) as info:
                client.infer("counted", [_http_input()], headers=headers)
            assert (info.value.status(), says in info.value.message()) == ("401", True), info.value
            with pytest.raises(InferenceServerException) as info:
                client.get_model_metadata("counted", headers=headers)
            assert info.value.status() == "401"
            with pytest.raises(InferenceServerException) as info:
                client.get_server_metadata(headers=headers)
            assert info.value.status() == "401"
        assert client.get_model_metadata("counted", headers=dict(GOOD_HTTP))["name"] == "counted"
        result = client.infer("counted", [_http_input()], headers=dict(GOOD_HTTP))
        np.testing.assert_array_equal(result.as_numpy("Y"), [[2, 3]])
    finally:
        client.close()


def test_rest_401_replies_and_the_open_paths(authed: Served) -> None:
    with httpx.Client(base_url=f"http://{authed.http_url}", timeout=30) as http:
        missing = http.post(INFER, json=BODY)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json() == {"error": "this server requires a bearer token: send 'Authorization: Bearer <token>'"}
        wrong = http.get("/v2", headers={"Authorization": f"Bearer {WRONG}"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert wrong.json() == {"error": "the bearer token is not valid for this server"}
        for value in (f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", "Bearer", f"Bearer  x{TOKEN}"):
            assert http.get("/v2", headers={"Authorization": value}).status_code == 401, value
        assert http.get("/v2", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200  # scheme: any case
        assert http.post(INFER, json=BODY, headers=GOOD_HTTP).json()["outputs"][0]["data"] == [2, 3]
        for path in (
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/counted/ready",
            "/v2/models/counted/versions/1/ready",
            "/docs",
            "/openapi.json",
        ):
            assert http.get(path).status_code == 200, path
        assert http.head("/v2/health/ready").status_code == 200
        head = http.head("/v2")
        assert head.status_code == 401 and head.content == b""
        for method, path in (("POST", "/v2/health/ready"), ("GET", "/v2/models"), ("GET", "/v2/models/counted")):
            assert http.request(method, path).status_code == 401, path


# --- OIP gRPC ------------------------------------------------------------------------------------


def test_grpc_tritonclient_is_refused_without_the_token_and_served_with_it(authed: Served) -> None:
    client = grpcclient.InferenceServerClient(authed.grpc_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("counted") and client.is_model_ready("counted", "1")
        for headers, says in ((None, MISSING), ({"authorization": f"Bearer {WRONG}"}, INVALID)):
            for name, *call_args in (("infer", "counted", [_grpc_input()]), ("get_model_metadata", "counted"),
                                     ("get_server_metadata",)):  # fmt: skip
                with pytest.raises(InferenceServerException) as info:
                    getattr(client, name)(*call_args, headers=headers)
                assert info.value.status() == "StatusCode.UNAUTHENTICATED" and says in info.value.message()
        assert client.get_model_metadata("counted", headers=dict(GOOD_GRPC), as_json=True)["name"] == "counted"
        result = client.infer("counted", [_grpc_input()], headers=dict(GOOD_GRPC))
        np.testing.assert_array_equal(result.as_numpy("Y"), [[2, 3]])

        # The bidirectional stream is refused as a whole, and served with the token.
        for headers in (None, dict(GOOD_GRPC)):
            results: queue.Queue[tuple[Any, Any]] = queue.Queue()
            client.start_stream(callback=lambda result, error, into=results: into.put((result, error)), headers=headers)
            try:
                try:
                    client.async_stream_infer("counted", [_grpc_input()], request_id="s")
                except InferenceServerException:
                    assert headers is None  # the stream was refused before the request went out
                result, error = results.get(timeout=30)
            finally:
                client.stop_stream()
            if headers is None:
                assert result is None and error.status() == "StatusCode.UNAUTHENTICATED"
            else:
                assert error is None and result.get_response().id == "s"
    finally:
        client.close()


def test_grpc_health_is_open_and_reflection_needs_the_token(authed: Served) -> None:
    with grpc.insecure_channel(authed.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30).status == SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        watch.cancel()
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as info:
            list(reflection.ServerReflectionInfo(iter([request]), timeout=30))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        [reply] = reflection.ServerReflectionInfo(iter([request]), timeout=30, metadata=GOOD_METADATA)
        assert "inference.GRPCInferenceService" in {s.name for s in reply.list_services_response.service}


# --- OMI, and what the log shows -----------------------------------------------------------------


def test_omi_needs_the_token_for_status_run_and_shutdown_and_no_token_reaches_the_log(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = ("--auth-token-file", str(token_file), "--log-level", "debug")
    with (
        serve(MODELS, protocols=("rest", "grpc", "omi"), args=args) as srv,
        grpc.insecure_channel(srv.omi_url) as channel,
    ):
        stub = omi_grpc.ModzyModelStub(channel)
        run = omi_pb.RunRequest(inputs=[omi_pb.InputItem(input={"X": b"[[1, 2]]"})])
        calls = ((stub.Status, omi_pb.StatusRequest()), (stub.Run, run), (stub.Shutdown, omi_pb.ShutdownRequest()))
        for metadata, says in (((), MISSING), ((("authorization", f"Bearer {WRONG}"),), INVALID)):
            for method, request in calls:
                with pytest.raises(grpc.RpcError) as info:
                    method(request, timeout=30, metadata=metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and says in info.value.details()
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="ModzyModel"), timeout=30).status == SERVING
        time.sleep(0.3)
        assert srv.proc.poll() is None, "a Shutdown without the token stopped the server"

        assert stub.Status(omi_pb.StatusRequest(), timeout=30, metadata=GOOD_METADATA).status_code == 200
        reply = stub.Run(run, timeout=30, metadata=GOOD_METADATA)
        assert reply.outputs[0].success and orjson.loads(reply.outputs[0].output["Y"]) == [[2, 3]]

        # Wrong and right tokens on the other two protocols too, for the log check below.
        with httpx.Client(base_url=f"http://{srv.http_url}", timeout=30) as http:
            assert http.post(INFER, json=BODY, headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
            assert http.post(INFER, json=BODY, headers=GOOD_HTTP).status_code == 200
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        try:
            with pytest.raises(InferenceServerException):
                client.infer("counted", [_grpc_input()], headers={"authorization": f"Bearer {WRONG}"})
            client.infer("counted", [_grpc_input()], headers=dict(GOOD_GRPC))
        finally:
            client.close()

        shutdown = stub.Shutdown(omi_pb.ShutdownRequest(), timeout=30, metadata=GOOD_METADATA)
        assert shutdown.status_code == 200
        assert srv.wait(30) == 0
        output = srv.output()
    assert "OMI Shutdown" in output
    assert f"bearer token required (--auth-token-file {token_file}" in output
    assert TOKEN not in output and WRONG not in output


# --- the origin check and CORS -------------------------------------------------------------------


def test_a_foreign_origin_is_refused_by_default_before_predict_runs(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    with (
        serve(MODELS, protocols=("rest",), env={"OMI_TEST_CALLS": str(calls)}) as srv,
        httpx.Client(base_url=f"http://{srv.http_url}", timeout=30) as http,
    ):
        srv.wait_ready()
        assert http.post(INFER, json=BODY).status_code == 200  # no Origin: curl, SDKs, tritonclient
        assert _calls(calls) == 1
        # What a web page can send without a preflight: a text/plain POST.
        simple = {"Content-Type": "text/plain"}
        body = orjson.dumps(BODY)
        for origin in ("http://evil.example", f"http://{srv.http_url}.evil.example", "null"):
            refused = http.post(INFER, content=body, headers={**simple, "Origin": origin})
            assert refused.status_code == 403, origin
            assert refused.json() == {"error": f"origin {origin} is not allowed (--cors-origins)"}
            assert "access-control-allow-origin" not in refused.headers
        assert _calls(calls) == 1  # predict never ran
        preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        assert http.options(INFER, headers=preflight).status_code == 403
        assert http.get("/v2", headers={"Origin": "http://evil.example"}).status_code == 403
        # The server's own pages (/docs) may call it.
        for own in (f"http://{srv.http_url}", f"https://{srv.http_url}"):
            reply = http.post(INFER, content=body, headers={**simple, "Origin": own})
            assert reply.status_code == 200 and "access-control-allow-origin" not in reply.headers
        assert _calls(calls) == 3


def test_cors_origins_are_allowed_with_a_preflight_and_others_refused(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = {"OMI_TEST_CALLS": str(calls), "OMI_AUTH_TOKEN": TOKEN}
    args = ("--cors-origins", "http://a.example,https://B.example:8443/")
    with (
        serve(MODELS, protocols=("rest",), env=env, args=args) as srv,
        httpx.Client(base_url=f"http://{srv.http_url}", timeout=30) as http,
    ):
        srv.wait_ready()
        for origin in ("http://a.example", "https://b.example:8443"):
            ask = {"Origin": origin, "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
            preflight = http.options(INFER, headers=ask)  # no token: a preflight never carries one
            assert preflight.status_code == 204, preflight.text
            assert preflight.headers["access-control-allow-origin"] == origin
            assert preflight.headers["vary"] == "origin"
            assert "POST" in preflight.headers["access-control-allow-methods"]
            allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
            assert {"authorization", "content-type", "inference-header-content-length"} <= allowed
            assert preflight.headers["access-control-max-age"] == "600"

            page = {"Origin": origin}
            refused = http.post(INFER, json=BODY, headers=page)
            assert refused.status_code == 401  # and the page may read why
            assert refused.headers["access-control-allow-origin"] == origin
            reply = http.post(INFER, json=BODY, headers={**page, **GOOD_HTTP})
            assert reply.status_code == 200 and reply.json()["outputs"][0]["data"] == [2, 3]
            assert reply.headers["access-control-allow-origin"] == origin and reply.headers["vary"] == "origin"
            assert reply.headers["access-control-expose-headers"] == "inference-header-content-length"
            meta = http.get("/v2/models/counted", headers={**page, **GOOD_HTTP})
            assert meta.status_code == 200 and meta.headers["access-control-allow-origin"] == origin
        assert _calls(calls) == 2

        other = {"Origin": "http://c.example", **GOOD_HTTP}
        assert http.post(INFER, json=BODY, headers=other).status_code == 403
        ask = {"Origin": "http://c.example", "Access-Control-Request-Method": "POST"}
        assert http.options(INFER, headers=ask).status_code == 403
        assert _calls(calls) == 2


# --- TLS -----------------------------------------------------------------------------------------


def test_tls_on_rest_grpc_and_omi(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    args = ("--tls-cert", str(cert), "--tls-key", str(key))
    with (
        serve(MODELS, protocols=("rest", "grpc", "omi"), env={"OMI_AUTH_TOKEN": TOKEN}, args=args) as srv,
        httpx.Client(
            base_url=f"https://{srv.http_url}", verify=ssl.create_default_context(cafile=str(cert)), timeout=30
        ) as http,
    ):
        deadline = time.monotonic() + 60
        while http.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, srv.output()
            time.sleep(0.05)
        assert http.post(INFER, json=BODY).status_code == 401
        assert http.post(INFER, json=BODY, headers=GOOD_HTTP).json()["outputs"][0]["data"] == [2, 3]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{srv.http_url}/v2/health/live", timeout=10)  # plain HTTP on the TLS port

        rest = httpclient.InferenceServerClient(srv.http_url, ssl=True, ssl_options={"ca_certs": str(cert)})
        try:
            assert rest.is_server_ready()
            result = rest.infer("counted", [_http_input()], headers=dict(GOOD_HTTP))
            np.testing.assert_array_equal(result.as_numpy("Y"), [[2, 3]])
        finally:
            rest.close()

        oip = grpcclient.InferenceServerClient(srv.grpc_url, ssl=True, root_certificates=str(cert))
        try:
            assert oip.is_server_ready()
            with pytest.raises(InferenceServerException) as info:
                oip.infer("counted", [_grpc_input()])
            assert info.value.status() == "StatusCode.UNAUTHENTICATED"
            np.testing.assert_array_equal(
                oip.infer("counted", [_grpc_input()], headers=dict(GOOD_GRPC)).as_numpy("Y"), [[2, 3]]
            )
        finally:
            oip.close()

        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(srv.omi_url, credentials) as channel:
            status = omi_grpc.ModzyModelStub(channel).Status(omi_pb.StatusRequest(), timeout=30, metadata=GOOD_METADATA)
            assert status.status_code == 200
        assert "Traceback" not in srv.output()


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            ("--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"),
            {},
            "omi: cannot read --tls-cert /nonexistent/cert.pem: No such file or directory",
        ),
        (
            (),
            {"OMI_AUTH_TOKEN": ""},
            "omi: the bearer token ($OMI_AUTH_TOKEN) is empty; unset it to serve without a token",
        ),
        (
            ("--cors-origins", "a.example"),
            {},
            (
                "omi: --cors-origins: 'a.example' is not a web origin; write scheme://host[:port] "
                "(e.g. https://app.example.com), 'null' or '*'"
            ),
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(args: tuple[str, ...], env: dict[str, str], says: str) -> None:
    command = [
        sys.executable, "-m", "omi_adapters.cli", "serve", MODELS, "--host", "127.0.0.1",
        "--http-port", str(free_port()), "--grpc-port", str(free_port()), "--omi-port", str(free_port()), *args,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stderr.strip()) == (2, says)


def test_load_token(tmp_path: Path) -> None:
    secret = "s3cr3t-" + secrets.token_hex(4)
    path = tmp_path / "token"
    for text in (secret, secret + "\n", secret + "\r\n"):
        path.write_text(text, newline="")
        assert load_token(str(path), {}) == secret.encode()
    assert load_token(None, {"OMI_AUTH_TOKEN": secret}) == secret.encode()
    assert load_token(None, {}) is None
    path.write_text("from-file")
    assert load_token(str(path), {"OMI_AUTH_TOKEN": "from-env"}) == b"from-file"  # the flag wins
    for bad, says in (
        ("", "is empty"),
        ("\n", "is empty"),
        (f"{secret} x", f"position {len(secret) + 1}:"),
        (f"{secret}\n\n", "position"),
    ):
        path.write_text(bad, newline="")
        with pytest.raises(ConfigurationError, match=says) as info:
            load_token(str(path), {})
        assert "--auth-token-file" in str(info.value) and (not bad.strip() or secret not in str(info.value))
    with pytest.raises(ConfigurationError, match=r"\$OMI_AUTH_TOKEN\) has a space"):
        load_token(None, {"OMI_AUTH_TOKEN": f"{secret} {secret}"})
    with pytest.raises(ConfigurationError, match="cannot read the token file") as info:
        load_token(str(tmp_path / "missing"), {"OMI_AUTH_TOKEN": secret})
    assert secret not in str(info.value)


def test_load_tls(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    assert load_tls(None, None) is None
    assert load_tls(str(cert), str(key)) == (cert.read_bytes(), key.read_bytes())
    other = tmp_path / "other.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(other)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="is not the private key of --tls-cert"):
        load_tls(str(cert), str(other))
    with pytest.raises(ConfigurationError, match="--tls-cert .* is not a PEM certificate"):
        load_tls(str(key), str(key))
    with pytest.raises(ConfigurationError, match="--tls-key .* is not a PEM private key"):
        load_tls(str(cert), str(cert))
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(ConfigurationError, match="is encrypted"):
        load_tls(str(cert), str(encrypted))
    with pytest.raises(ConfigurationError, match="go together"):
        load_tls(str(cert), None)


def test_origins_and_open_paths() -> None:
    assert check_origins(["HTTP://A.example/", "*", "null", "https://b.example:8443"]) == (
        "http://a.example", "*", "null", "https://b.example:8443")  # fmt: skip
    for bad in ("a.example", "ftp://a.example", "http://a.example/path", "http://", "http://u@a.example"):
        with pytest.raises(ConfigurationError, match="not a web origin"):
            check_origins([bad])
    for method, path in (
        ("GET", "/v2/health/live"), ("HEAD", "/v2/health/ready"), ("GET", "/v2/models/m/ready"),
        ("GET", "/v2/models/m/versions/2/ready"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ):  # fmt: skip
        assert rest_open(method, path), (method, path)
    for method, path in (
        ("POST", "/v2/health/live"), ("GET", "/v2"), ("GET", "/v2/models"), ("GET", "/v2/models/m"),
        ("POST", "/v2/models/m/infer"), ("GET", "/v2/models//ready"), ("GET", "/v2/models/m/versions//ready"),
        ("GET", "/v2/models/m/x/ready"), ("GET", "/v2/health/live/"), ("GET", "/v2/models/m/versions/1/ready/x"),
    ):  # fmt: skip
        assert not rest_open(method, path), (method, path)


def test_the_gate_in_process() -> None:
    """HEAD refusals have no body, WebSockets meet the same rules, lifespan passes."""
    ran: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ran.append(scope["type"])

    async def call(gate: AccessGate, scope: dict[str, Any]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        await gate(scope, receive, send)
        return sent

    gate = AccessGate(app, token=b"tok", origins=())
    host = (b"host", b"127.0.0.1:1")
    head = asyncio.run(call(gate, {"type": "http", "method": "HEAD", "path": "/v2", "headers": [host]}))
    assert head[0]["status"] == 401 and head[1]["body"] == b""
    ws = {"type": "websocket", "path": "/x", "headers": [host]}
    assert asyncio.run(call(gate, ws)) == [{"type": "websocket.close", "code": 1008}]
    good = (b"authorization", b"Bearer tok")
    foreign = {**ws, "headers": [host, good, (b"origin", b"http://evil.example")]}
    assert asyncio.run(call(gate, foreign)) == [{"type": "websocket.close", "code": 1008}]
    assert ran == []
    asyncio.run(call(gate, {**ws, "headers": [host, good, (b"origin", b"http://127.0.0.1:1")]}))
    asyncio.run(call(gate, {"type": "lifespan"}))
    assert ran == ["websocket", "lifespan"]


async def _nothing_sent() -> AsyncIterator[bytes]:
    """A request stream that waits, sending nothing, until the call ends."""
    await asyncio.Event().wait()
    yield b""


def test_the_interceptor_refuses_every_kind_of_method_before_it_runs() -> None:
    ran: list[str] = []

    async def unary_unary(request: bytes, context: Any) -> bytes:
        ran.append("uu")
        return request

    async def unary_stream(request: bytes, context: Any) -> Any:
        ran.append("us")
        yield request

    async def stream_unary(requests: Any, context: Any) -> bytes:
        ran.append("su")
        return b"".join([r async for r in requests])

    async def stream_stream(requests: Any, context: Any) -> Any:
        ran.append("ss")
        async for request in requests:
            yield request

    service = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "UU": grpc.unary_unary_rpc_method_handler(unary_unary),
            "US": grpc.unary_stream_rpc_method_handler(unary_stream),
            "SU": grpc.stream_unary_rpc_method_handler(stream_unary),
            "SS": grpc.stream_stream_rpc_method_handler(stream_stream),
        },
    )

    async def main() -> None:
        server = grpc.aio.server(interceptors=[TokenInterceptor(b"tok")])
        server.add_generic_rpc_handlers((service,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

                async def each(metadata: tuple[tuple[str, str], ...]) -> list[Any]:
                    uu = channel.unary_unary("/test.Echo/UU")(b"a", metadata=metadata, timeout=10)
                    us = channel.unary_stream("/test.Echo/US")(b"b", metadata=metadata, timeout=10)
                    su = channel.stream_unary("/test.Echo/SU")(iter([b"c"]), metadata=metadata, timeout=10)
                    ss = channel.stream_stream("/test.Echo/SS")(iter([b"d"]), metadata=metadata, timeout=10)
                    return [await uu, [r async for r in us], await su, [r async for r in ss]]

                for method in ("UU", "US", "SU", "SS"):
                    for metadata in ((), (("authorization", "Bearer nope"),), (("authorization", "tok"),)):
                        multi = {
                            "UU": channel.unary_unary,
                            "US": channel.unary_stream,
                            "SU": channel.stream_unary,
                            "SS": channel.stream_stream,
                        }[method](f"/test.Echo/{method}")
                        # A stream of requests sends nothing: a message sent while the refusal is
                        # on its way fails the client's own send (grpcio's INTERNAL), a race.
                        request: Any = b"x" if method[0] == "U" else _nothing_sent()
                        with pytest.raises(grpc.aio.AioRpcError) as info:
                            call = multi(request, metadata=metadata, timeout=10)
                            if method[1] == "S":
                                async for _ in call:
                                    pass
                            else:
                                await call
                        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (method, metadata)
                assert ran == []
                assert await each((("authorization", "Bearer tok"),)) == [b"a", [b"b"], b"c", [b"d"]]
                # The four calls are in flight together, so they may start in any order.
                assert sorted(ran) == sorted(["uu", "us", "su", "ss"])
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary("/test.Echo/Nope")(b"a", timeout=10)
                assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(None)

    asyncio.run(main())
