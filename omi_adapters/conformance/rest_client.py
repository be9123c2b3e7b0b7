"""A small HTTP/1.1 client for the REST checks (the standard library's ``http.client``).

Every request has a whole-request deadline, not only a socket timeout: a server that trickles
its answer a byte at a time is cut off like one that never answers. The request runs in a
daemon thread that the caller stops waiting for at the deadline; the socket's own timeout ends
that thread soon after.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Answer", "CallFailed", "RestClient", "parse_url"]


class CallFailed(Exception):
    """The request got no HTTP answer: refused, reset, timed out or too large. The message says which."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` naming what came back when it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise ValueError(f"the body is not JSON: {self.excerpt()}") from None

    def excerpt(self) -> str:
        """The start of the body, for a detail line."""
        text = self.body[:120].decode("utf-8", "replace")
        return repr(text + ("..." if len(self.body) > 120 else ""))

    def describe(self) -> str:
        """``HTTP 400 '{"error": "..."}'``."""
        return f"HTTP {self.status} {self.excerpt()}"


def parse_url(url: str) -> tuple[str, str, int, str]:
    """``http[s]://host[:port][/prefix]`` (or ``host:port``) -> (scheme, host, port, path prefix).

    Raises ``ValueError`` naming what is wrong with it.
    """
    text = url if "://" in url else f"http://{url}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: the scheme must be http or https, not {parts.scheme!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a server URL has no query or fragment")
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port if port is not None else default, parts.path.rstrip("/")


class RestClient:
    """Requests to one OIP REST server, each bounded by ``timeout`` seconds and ``max_body`` bytes."""

    def __init__(self, url: str, *, timeout: float, max_body: int, headers: Mapping[str, str] | None = None) -> None:
        self.scheme, self.host, self.port, self.prefix = parse_url(url)
        self.timeout = timeout
        self.max_body = max_body
        self.headers = dict(headers or {})

    @property
    def base(self) -> str:
        """``http://host:port`` (for messages)."""
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"

    def get(self, path: str) -> Answer:
        """``GET path``."""
        return self.request("GET", path)

    def post_json(self, path: str, document: Any, headers: Mapping[str, str] | None = None) -> Answer:
        """``POST path`` with ``document`` as its JSON body."""
        body = json.dumps(document).encode()
        return self.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """One request on a fresh connection; ``CallFailed`` when no complete answer came within the timeout."""
        result: list[Answer | BaseException] = []
        worker = threading.Thread(
            target=self._run, args=(method, path, body, {**self.headers, **(headers or {})}, result), daemon=True
        )
        worker.start()
        worker.join(self.timeout)
        if not result:
            raise CallFailed(f"{method} {path}: no answer within {self.timeout:g} s (--timeout)")
        outcome = result[0]
        if isinstance(outcome, BaseException):
            raise CallFailed(f"{method} {path}: {_reason(outcome, self.timeout)}")
        return outcome

    def _run(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        result: list[Answer | BaseException],
    ) -> None:
        connection: http.client.HTTPConnection
        if self.scheme == "https":
            import ssl  # only for https: its import costs more than the rest of this module

            connection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, self.prefix + path, body=body, headers=dict(headers))
            response = connection.getresponse()
            chunks, size = [], 0
            deadline = time.monotonic() + self.timeout
            while chunk := response.read(65536):
                size += len(chunk)
                if size > self.max_body:
                    raise CallFailed(f"the answer is larger than {self.max_body} bytes (--max-body)")
                if time.monotonic() > deadline:
                    raise CallFailed("the answer did not finish in time")
                chunks.append(chunk)
            names = {k.lower(): v for k, v in response.getheaders()}
            result.append(Answer(response.status, names, b"".join(chunks)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, which reports it
            result.append(exc)
        finally:
            connection.close()


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, CallFailed):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running at this address?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s (--timeout)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
