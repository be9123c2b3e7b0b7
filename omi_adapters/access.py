"""Access control for ``omi serve``: one bearer token for every protocol, TLS files, web origins.

- **Token**: off by default. ``--auth-token-file PATH`` or ``$OMI_AUTH_TOKEN`` turns it on for
  REST (``Authorization: Bearer TOKEN``), OIP gRPC and OMI (``authorization`` metadata); the
  file wins when both are given, as a flag wins over the environment. Health and readiness
  stay open for probes (:data:`GRPC_OPEN_METHODS`, :func:`rest_open`). Tokens are compared as
  SHA-256 digests with :func:`hmac.compare_digest`, in a time that depends on neither the
  token's value nor its length, and they appear in no message and no log.
- **Origins**: a request that carries ``Origin`` (a browser's) is refused with 403 unless the
  origin is the server's own or one of ``--cors-origins``; no ``Origin`` (curl, SDKs,
  tritonclient) is always let through. This is on by default, so a web page cannot drive
  inference on a server bound to localhost with a CORS "simple" request (a ``text/plain``
  POST is sent without a preflight; the browser would only hide the reply from the page).
- **TLS**: :func:`load_tls` reads and checks ``--tls-cert`` and ``--tls-key`` once, so that a
  bad file is one line naming the flag.

Nothing here imports more than the standard library and the error tree. :class:`AccessGate` is
the ASGI wrapper of the REST application; :mod:`omi_adapters.grpc_access` holds the gRPC
interceptor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from omi_adapters.errors import ConfigurationError

__all__ = [
    "GRPC_OPEN_METHODS",
    "TOKEN_ENV",
    "TOKEN_FLAG",
    "AccessGate",
    "TokenCheck",
    "access_summary",
    "check_origins",
    "load_tls",
    "load_token",
    "rest_open",
]

TOKEN_ENV = "OMI_AUTH_TOKEN"
TOKEN_FLAG = "--auth-token-file"

#: gRPC methods served without the token: health checking, liveness and readiness.
GRPC_OPEN_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
        "/inference.GRPCInferenceService/ModelReady",
    }
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- configuration --------------------------------------------------------------------------------


def load_token(path: str | None, environ: Mapping[str, str]) -> bytes | None:
    """The bearer token from the file at ``path`` or else ``environ["OMI_AUTH_TOKEN"]``; None: auth is off.

    One trailing newline (``\\n`` or ``\\r\\n``) is dropped, as editors and ``echo`` write one.
    The token must be printable ASCII without spaces, as HTTP headers and gRPC metadata carry it.

    Raises:
        ConfigurationError: the file cannot be read, or the token is empty or has a character
            a header cannot carry; the message names the flag or variable, never the token.
    """
    if path is not None:
        where = f"{TOKEN_FLAG} {path}"
        try:
            with open(path, "rb") as file:
                raw = file.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the token file ({where}): {exc.strerror or exc}") from None
    elif TOKEN_ENV in environ:
        where = f"${TOKEN_ENV}"
        raw = environ[TOKEN_ENV].encode("utf-8", "surrogateescape")
    else:
        return None
    token = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
    if not token:
        raise ConfigurationError(f"the bearer token ({where}) is empty; unset it to serve without a token")
    bad = next((i for i, c in enumerate(token) if not 0x21 <= c <= 0x7E), None)
    if bad is not None:
        raise ConfigurationError(
            f"the bearer token ({where}) has a space, control or non-ASCII character at position {bad + 1}: "
            "it must be printable ASCII, as HTTP headers and gRPC metadata carry it"
        )
    return token


def load_tls(cert: str | None, key: str | None) -> tuple[bytes, bytes] | None:
    """The PEM certificate chain and private key of ``--tls-cert`` and ``--tls-key``, checked; None: no TLS.

    Raises:
        ConfigurationError: one of them is missing or unreadable, not PEM, encrypted, or the
            key does not belong to the certificate.
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigurationError("--tls-cert and --tls-key go together")
    pems = []
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb") as file:
                pems.append(file.read())
        except OSError as exc:
            raise ConfigurationError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    cert_pem, key_pem = pems
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise ConfigurationError(f"--tls-cert {cert} is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
    if b"PRIVATE KEY-----" not in key_pem:
        raise ConfigurationError(f"--tls-key {key} is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
    if b"ENCRYPTED" in key_pem:
        raise ConfigurationError(f"--tls-key {key} is encrypted; the server needs an unencrypted key")

    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The password callback keeps OpenSSL from ever prompting on a terminal.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            raise ConfigurationError(f"--tls-key {key} is not the private key of --tls-cert {cert}") from None
        raise ConfigurationError(f"--tls-cert {cert} / --tls-key {key} cannot be used: {reason}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read --tls-cert {cert} / --tls-key {key}: {exc.strerror or exc}") from None
    return cert_pem, key_pem


def access_summary(token_path: str | None, token: bool, tls: bool) -> str:
    """How a front end is protected, for the start-up log: where the token comes from, never the token."""
    source = f"{TOKEN_FLAG} {token_path}" if token_path is not None else f"${TOKEN_ENV}"
    required = f"bearer token required ({source}; health and readiness open)" if token else "no token"
    return f"{required}, {'TLS' if tls else 'no TLS'}"


def check_origins(origins: Sequence[str]) -> tuple[str, ...]:
    """``--cors-origins`` normalized (lower case, no trailing slash): ``*``, ``null`` or ``scheme://host[:port]``.

    Raises:
        ConfigurationError: an entry is not an origin (a path, no scheme, another scheme).
    """
    out = []
    for origin in origins:
        text = origin.strip().rstrip("/").lower()
        if text in ("*", "null"):
            out.append(text)
            continue
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or any(c in rest for c in "/?#@ "):
            raise ConfigurationError(
                f"--cors-origins: {origin!r} is not a web origin; write scheme://host[:port] "
                "(e.g. https://app.example.com), 'null' or '*'"
            )
        out.append(text)
    return tuple(out)


# --- the checks -------------------------------------------------------------------------------------


class TokenCheck:
    """Whether a header value is ``Bearer TOKEN`` for the server's token, in constant time."""

    __slots__ = ("_digest",)

    def __init__(self, token: bytes) -> None:
        self._digest = hashlib.sha256(token).digest()

    def __call__(self, value: bytes) -> bool:
        # The scheme is case-insensitive (RFC 9110 §11.1); digests of equal length hide the token's.
        if len(value) < 7 or value[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(hashlib.sha256(value[7:].strip(b" \t")).digest(), self._digest)


def rest_open(method: str, path: str) -> bool:
    """Whether a REST request is served without the token: GET/HEAD of health, readiness and docs.

    The docs (``/docs``, ``/redoc``, ``/openapi.json``) describe the API, not the models; the
    model routes match as :mod:`omi_adapters.rest` routes them.
    """
    if method not in ("GET", "HEAD"):
        return False
    if path in _OPEN_PATHS or path.startswith("/docs-assets/"):  # the docs pages' own scripts and styles
        return True
    if not path.startswith("/v2/models/") or not path.endswith("/ready"):
        return False
    parts = path[11:].split("/")
    if len(parts) == 2:
        return bool(parts[0])
    return len(parts) == 4 and bool(parts[0]) and parts[1] == "versions" and bool(parts[2])


_OPEN_PATHS = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)


# --- REST -----------------------------------------------------------------------------------------

_JSON = (b"content-type", b"application/json")
_ALLOW_METHODS = b"GET, HEAD, POST, OPTIONS"
_ALLOW_HEADERS = b"authorization, content-encoding, content-type, inference-header-content-length"
_EXPOSE_HEADERS = b"inference-header-content-length"
_MAX_AGE = b"600"


class AccessGate:
    """The REST application behind the origin check, CORS and the bearer token.

    One pass over the request headers finds ``Origin`` and ``Authorization``; a request with
    neither, to a server without a token, goes straight to the application. In order: a
    foreign origin is refused (403), a CORS preflight from an allowed one is answered (it
    needs no token), a request without the token is refused (401, open paths excepted), and
    replies to an allowed cross-origin request carry ``Access-Control-Allow-Origin``.
    """

    def __init__(self, app: App, *, token: bytes | None = None, origins: Sequence[str] = ()) -> None:
        self.app = app
        self._check = TokenCheck(token) if token is not None else None
        origins = check_origins(origins)
        self._any_origin = "*" in origins
        self._origins = frozenset(o.encode() for o in origins if o != "*")

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the application's coroutine: no coroutine of its own on the
        # way in (ASGI 3 asks for a callable returning an awaitable; tell uvicorn interface="asgi3").
        if scope["type"] != "http":
            return self._other(scope, receive, send)
        origin = authorization = None
        for key, value in scope["headers"]:
            if key == b"origin":
                origin = value
            elif key == b"authorization":
                authorization = value
        if origin is not None:
            return self._cross(scope, receive, send, origin, authorization)
        check = self._check
        if (
            check is None
            or (authorization is not None and check(authorization))
            or rest_open(scope["method"], scope["path"])
        ):
            return self.app(scope, receive, send)
        return _refuse_token(scope, send, authorization is None, ())

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Lifespan passes; a WebSocket (the application has none) is held to the same rules."""
        if scope["type"] == "websocket" and not self._websocket_allowed(scope):
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    def _websocket_allowed(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is not None:
            origin = origin.lower()
            if not (self._any_origin or origin in self._origins or _same_origin(scope, origin)):
                return False
        authorization = headers.get(b"authorization")
        return self._check is None or (authorization is not None and self._check(authorization))

    async def _cross(
        self, scope: Scope, receive: Receive, send: Send, origin: bytes, authorization: bytes | None
    ) -> None:
        """A request with an ``Origin``: a web page's."""
        origin = origin.lower()
        cors: tuple[tuple[bytes, bytes], ...] = ()
        if self._any_origin:
            cors = ((b"access-control-allow-origin", b"*"),)
        elif origin in self._origins:
            cors = ((b"access-control-allow-origin", origin), (b"vary", b"origin"))
        elif not _same_origin(scope, origin):
            shown = origin.decode("latin-1")
            await _reply(scope, send, 403, f"origin {shown} is not allowed (--cors-origins)", ())
            return
        method = scope["method"]
        if method == "OPTIONS" and any(k == b"access-control-request-method" for k, _ in scope["headers"]):
            await _preflight(send, cors)
            return
        check = self._check
        if (
            check is not None
            and not (authorization is not None and check(authorization))
            and not rest_open(method, scope["path"])
        ):
            await _refuse_token(scope, send, authorization is None, cors)
            return
        if not cors:
            await self.app(scope, receive, send)
            return
        extra = (*cors, (b"access-control-expose-headers", _EXPOSE_HEADERS))

        async def send_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_cors)


def _same_origin(scope: Scope, origin: bytes) -> bool:
    """``Origin`` is ``http://`` or ``https://`` and this request's ``Host``: a page this server
    (or a TLS proxy in front of it, under the same name) served."""
    for key, value in scope["headers"]:
        if key == b"host":
            host: bytes = value.lower()
            return origin == b"http://" + host or origin == b"https://" + host
    return False


async def _refuse_token(scope: Scope, send: Send, missing: bool, cors: tuple[tuple[bytes, bytes], ...]) -> None:
    if missing:
        message = "this server requires a bearer token: send 'Authorization: Bearer <token>'"
        challenge = b"Bearer"
    else:
        message = "the bearer token is not valid for this server"
        challenge = b'Bearer error="invalid_token"'
    await _reply(scope, send, 401, message, ((b"www-authenticate", challenge), *cors))


async def _reply(scope: Scope, send: Send, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...]) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def _preflight(send: Send, cors: tuple[tuple[bytes, bytes], ...]) -> None:
    headers = [
        *cors,
        (b"access-control-allow-methods", _ALLOW_METHODS),
        (b"access-control-allow-headers", _ALLOW_HEADERS),
        (b"access-control-max-age", _MAX_AGE),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
