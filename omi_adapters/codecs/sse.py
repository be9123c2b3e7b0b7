"""Server-sent events (the WHATWG HTML standard's "Server-sent events", ``text/event-stream``).

Only what a JSON event stream needs: one ``data:`` field per event. A JSON text has no raw line
break (orjson escapes them inside strings), so each event is exactly one ``data:`` line.
"""

from __future__ import annotations

import orjson

__all__ = ["CONTENT_TYPE", "error_event", "event"]

#: The content type of a generate stream, as Triton's generate extension sends it.
CONTENT_TYPE = b"text/event-stream; charset=utf-8"


def event(document: bytes) -> bytes:
    """One event carrying a JSON ``document`` (which must hold no line break)."""
    return b"data: " + document + b"\n\n"


def error_event(message: str) -> bytes:
    """The event of an error after the stream began: ``data: {"error": message}``."""
    return event(orjson.dumps({"error": message}))
