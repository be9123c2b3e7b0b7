"""HTTP content codings of REST bodies: gzip and deflate (RFC 9110 "Content-Encoding", "Accept-Encoding").

What ``tritonclient.http`` sends with ``request_compression_algorithm`` and asks for with
``response_compression_algorithm``, and what Triton's HTTP server reads and writes:

- ``gzip`` is RFC 1952 (one member or several, one after another);
- ``deflate`` is, as RFC 9110 defines it, the zlib format of RFC 1950 (what ``zlib.compress``
  writes and tritonclient sends); a raw RFC 1951 stream, which some clients send under the same
  name, is read too, told apart by the two-byte zlib header that a raw stream does not have.

A request body is inflated by :class:`Inflater` a slice at a time (``max_length``), so a small
body that would inflate past the limit is refused once it passes it, holding no more than the
limit. A response is compressed by :func:`compress` from its chunks, without joining them first.
The binary tensor data extension's ``Inference-Header-Content-Length`` counts the bytes of the
uncompressed body, as Triton's server writes it and tritonclient reads it (after inflating).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from omi_adapters.errors import InvalidInputError, PayloadTooLargeError, UnsupportedEncodingError

__all__ = [
    "ACCEPTED",
    "LEVEL",
    "MIN_RESPONSE_BYTES",
    "Inflater",
    "compress",
    "request_encoding",
    "response_encoding",
]

#: The codings a request body may have (besides ``identity``), as the 415 answer lists them.
ACCEPTED = "gzip, deflate"
#: zlib's fastest level: tensors compress little better at higher levels, at several times the CPU.
LEVEL = 1
#: Shorter responses go out uncompressed: a few hundred bytes gain nothing worth a compressor's set-up.
MIN_RESPONSE_BYTES = 1024
#: The most bytes one ``decompress`` call makes (the pieces the inflated body is joined from).
_PIECE = 1 << 20
#: The most compressed bytes one ``decompress`` call is given: what it leaves over is copied.
_FEED = 256 * 1024
#: zlib's ``wbits`` for each format: gzip, zlib (RFC 1950), raw deflate (RFC 1951).
_GZIP, _ZLIB, _RAW = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS
#: Aliases RFC 9110 asks recipients to read as ``gzip``.
_NAMES = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def request_encoding(value: str | bytes) -> str | None:
    """The coding a ``Content-Encoding`` header names: ``"gzip"``, ``"deflate"``, or ``None`` (identity).

    Raises:
        UnsupportedEncodingError: any other coding, or several stacked (``gzip, br``), named.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    name = text.strip().lower()
    if name in ("", "identity"):
        return None
    coding = _NAMES.get(name)
    if coding is None:
        raise UnsupportedEncodingError(
            f"Content-Encoding {text.strip()!r} is not supported: the request body may be {ACCEPTED} or identity"
        )
    return coding


def response_encoding(value: str | bytes) -> str | None:
    """The coding to answer an ``Accept-Encoding`` header with: ``"gzip"``, ``"deflate"`` or ``None``.

    The coding of the highest ``q`` among gzip, deflate and identity wins, the first listed on a
    tie (as Triton's server chooses); ``*`` stands for gzip, or deflate when gzip is listed; ``q=0``
    refuses a coding. A malformed entry is ignored.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    best: str | None = None
    weight = 0.0
    listed: set[str] = set()
    entries: list[tuple[str, float]] = []
    for entry in text.split(","):
        name, _, params = entry.partition(";")
        name = name.strip().lower()
        q = 1.0
        params = params.strip().lower()
        if params:
            key, _, number = params.partition("=")
            if key.strip() != "q":
                continue
            try:
                q = float(number)
            except ValueError:
                continue
            if not 0.0 <= q <= 1.0:
                continue
        name = _NAMES.get(name, name)
        listed.add(name)
        entries.append((name, q))
    for name, q in entries:
        if name == "*":
            # Any coding not listed (RFC 9110 12.5.3): the first of ours that is not.
            name = next((coding for coding in ("gzip", "deflate") if coding not in listed), "*")
        if name in ("gzip", "deflate", "identity") and q > weight:
            best, weight = name, q
    return None if best == "identity" else best


class Inflater:
    """Inflates one compressed request body, a bounded slice at a time, never past ``limit`` bytes.

    Call :meth:`inflate` until :attr:`done`, then take :meth:`result`. Errors name the problem:
    :class:`PayloadTooLargeError` once the inflated body passes ``limit`` (at most ``limit + 1``
    bytes are ever inflated), :class:`InvalidInputError` for data that is not of the coding, is
    cut short, or has bytes after its end.
    """

    __slots__ = ("_body", "_coding", "_limit", "_obj", "_offset", "_pending", "_pieces", "done", "size")

    def __init__(self, coding: str, body: bytes | memoryview, limit: int) -> None:
        self._coding = coding
        self._limit = limit
        self._body = memoryview(body)
        self._offset = 0
        # The input of the next decompress call: what the last one left, else the next slice.
        self._pending: bytes | memoryview = b""
        self._pieces: list[bytes] = []
        self._obj = zlib.decompressobj(_wbits(coding, self._body[:2]))
        #: Bytes inflated so far.
        self.size = 0
        #: Whether the whole body is inflated.
        self.done = False

    def inflate(self, max_bytes: int | None = None) -> int:
        """Inflate up to ``max_bytes`` more (all that is left when ``None``); the number inflated."""
        made = 0
        while not self.done and (max_bytes is None or made < max_bytes):
            step = min(_PIECE, self._limit - self.size + 1)
            if max_bytes is not None:
                step = min(step, max_bytes - made)
            if not self._pending and self._offset < len(self._body):
                self._pending = self._body[self._offset : self._offset + _FEED]
                self._offset += len(self._pending)
            try:
                piece = self._obj.decompress(self._pending, step)
            except zlib.error as exc:
                raise InvalidInputError(
                    f"request body is not valid {self._coding} data (Content-Encoding: {self._coding}): {exc}"
                ) from None
            self._pending = self._obj.unconsumed_tail
            if piece:
                self.size += len(piece)
                if self.size > self._limit:
                    raise PayloadTooLargeError(
                        f"request body inflates ({self._coding}) past the limit of {self._limit} bytes "
                        "(--max-message-bytes)"
                    )
                self._pieces.append(piece)
                made += len(piece)
            if self._obj.eof:
                self._end_of_stream()
            elif not self._pending and self._offset == len(self._body) and len(piece) < step:
                # All the input is read and zlib has nothing more to give: the stream was cut short.
                raise InvalidInputError(
                    f"request body is truncated {self._coding} data (Content-Encoding: {self._coding}): "
                    "it ends before its compressed stream does"
                )
        return made

    def _end_of_stream(self) -> None:
        rest = self._obj.unused_data
        left = len(rest) + len(self._body) - self._offset
        if not left:
            self.done = True
        elif self._coding == "gzip" and (rest + bytes(self._body[self._offset : self._offset + 2]))[:2] == b"\x1f\x8b":
            # Another gzip member follows (RFC 1952 2.2): its bytes continue the body.
            self._obj = zlib.decompressobj(_GZIP)
            self._pending = rest
        else:
            raise InvalidInputError(
                f"request body has {left} bytes after the end of its {self._coding} data "
                f"(Content-Encoding: {self._coding})"
            )

    def result(self) -> bytes:
        """The inflated body (once :attr:`done`)."""
        pieces, self._pieces = self._pieces, []
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _wbits(coding: str, head: memoryview) -> int:
    if coding == "gzip":
        return _GZIP
    # A zlib stream starts with CMF (method 8, window at most 2^15) and FLG, CMF*256+FLG a
    # multiple of 31 (RFC 1950 2.2); a raw deflate stream's first bits cannot pass all three.
    if len(head) == 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0:
        return _ZLIB
    return _RAW


def compress(chunks: Sequence[bytes | memoryview], coding: str, level: int = LEVEL) -> bytes:
    """The body made of ``chunks``, compressed as ``coding`` (``"gzip"`` or ``"deflate"``, the zlib format)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP if coding == "gzip" else _ZLIB)
    out = [compressor.compress(chunk) for chunk in chunks]
    out.append(compressor.flush())
    return b"".join(out)
