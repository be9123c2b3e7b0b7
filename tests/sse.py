"""A server-sent events parser for the tests, after the WHATWG HTML standard's "Server-sent events"
(its "Interpreting an event stream"), independent of the server's own encoder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def events(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each event in the stream's lines (without their line ends)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
            continue
        if line.startswith(":"):
            continue  # a comment
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")  # the one space after the colon
        if field == "data":
            data.append(value)
    # An event not ended by a blank line is dropped, as the standard says.
