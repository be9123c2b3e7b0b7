"""One logging configuration for omi, uvicorn and grpc, and the access log of every protocol.

``omi serve --log-format text`` (the default) writes ``time LEVEL logger: message`` lines;
``--log-format json`` writes one JSON object per line, with the fields of an access line as keys
of their own. uvicorn is told not to configure logging (its loggers propagate to the root
logger's one handler); grpc's Python loggers do the same (its C core writes only when
``GRPC_VERBOSITY`` asks it to).

The access log is the logger ``omi_adapters.access``: one line per inference request on every
protocol (``--access-log``, the default; ``--no-access-log`` turns it off and costs nothing then).
Standard library and orjson (a dependency of the core).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sys
import time
import traceback
from typing import Any

import orjson

__all__ = ["ACCESS_FIELDS", "AccessLog", "JsonFormatter", "configure", "request_id"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The fields of an access line, in order (JSON keys; the text line shows them as key=value).
ACCESS_FIELDS = ("protocol", "endpoint", "model", "version", "status", "duration_ms", "bytes_in", "bytes_out",
                 "request_id", "peer")  # fmt: skip
# Not fields of their own: the record's attributes, and uvicorn's coloured copy of the message.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, any extra fields, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def configure(level: str = "info", fmt: str = "text") -> logging.Handler:
    """Route every logger of the process (omi, uvicorn, grpc) to one stderr handler in ``fmt``; that handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "grpc", "grpc._cython", "grpc.aio"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    global _configured
    _configured = (handler, fmt)
    return handler


#: The handler and format of the last :func:`configure`, which access lines are written with.
_configured: tuple[logging.StreamHandler[Any], str] | None = None


_ids = 0
_PREFIX = os.urandom(4).hex()


def request_id() -> str:
    """An id for a request that did not bring one: unique in this process, different per process."""
    global _ids
    _ids += 1
    return f"{_PREFIX}-{_ids}"


class AccessLog:
    """Writes one access line per request as the logger ``omi_adapters.access`` would.

    Given the handler of :func:`configure`, it writes the line, in that handler's format, straight
    to its stream: a ``LogRecord`` and the logging machinery cost several times as much as the
    line itself, on every request. Without one, it logs through the logger.
    """

    def __init__(self, handler: logging.StreamHandler[Any] | None = None, fmt: str = "text") -> None:
        self.logger = logging.getLogger("omi_adapters.access")
        if handler is None and _configured is not None:
            handler, fmt = _configured
        self.handler = handler
        self.json = fmt == "json"

    def __call__(
        self,
        protocol: str,
        endpoint: str,
        model: str,
        version: str,
        status: str,
        seconds: float,
        bytes_in: int,
        bytes_out: int,
        request_id_: str | None,
        peer: str | None,
    ) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        rid = request_id_ or request_id()
        ms = round(seconds * 1000, 3)
        peer = peer or ""
        message = (
            f"{protocol} {endpoint} {status} {f'{model}:{version}' if version else model or '-'} {ms:.3f}ms "
            f"in={bytes_in} out={bytes_out} id={rid} peer={peer or '-'}"
        )
        handler = self.handler
        if handler is None or logger.handlers or not logger.propagate:
            fields = {
                "protocol": protocol, "endpoint": endpoint, "model": model, "version": version, "status": status,
                "duration_ms": ms, "bytes_in": bytes_in, "bytes_out": bytes_out, "request_id": rid, "peer": peer,
            }  # fmt: skip
            logger.info("%s", message, extra=fields)
            return
        now = time.time()
        if self.json:
            entry = {
                "time": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(timespec="milliseconds"),
                "level": "INFO", "logger": logger.name, "message": message, "protocol": protocol,
                "endpoint": endpoint, "model": model, "version": version, "status": status, "duration_ms": ms,
                "bytes_in": bytes_in, "bytes_out": bytes_out, "request_id": rid, "peer": peer,
            }  # fmt: skip
            line = orjson.dumps(entry).decode()
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            line = f"{stamp},{int(now * 1000) % 1000:03d} INFO {logger.name}: {message}"
        with handler.lock or contextlib.nullcontext():
            handler.stream.write(line + "\n")
            handler.flush()
