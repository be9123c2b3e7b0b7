"""The streaming figures of ``make bench``: tokens per second and time to first token of one
stream of N small responses, over REST's ``generate_stream`` (server-sent events) and over
gRPC's ``ModelStreamInfer`` (each response a message, ``triton_enable_empty_final_response``
set so that none waits for the next).

The clients are lean, so that they stay ahead of the server on their own core: a raw socket
that reads the chunked reply and counts its events, and a bare HTTP/2 client that counts the
gRPC messages of the reply.
Time to first token is from sending the request to receiving the first event or message.
"""

from __future__ import annotations

import socket
import statistics
import time
from typing import Any

import orjson

#: Responses per stream: the figure the targets are set for.
TOKENS = 10_000
STREAM_PATH = "/v2/models/{model}/generate_stream"
GRPC_STREAM_PATH = "/inference.GRPCInferenceService/ModelStreamInfer"


def _once_sse(port: int, count: int, model: str) -> tuple[float, float]:
    body = orjson.dumps({"count": count})
    head = (
        f"POST {STREAM_PATH.format(model=model)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        began = time.perf_counter()
        sock.sendall(head + body)
        received = bytearray()
        first = None
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            if first is None and b"data: " in chunk:
                first = time.perf_counter()
            received += chunk
            if received.endswith(b"\r\n0\r\n\r\n"):  # the end of the chunked body
                break
        ended = time.perf_counter()
    events = received.count(b"data: ")
    if not received.startswith(b"HTTP/1.1 200") or events != count or b'"error"' in received:
        raise RuntimeError(f"generate_stream answered {events} events of {count}: {bytes(received[:300])!r}")
    assert first is not None
    return count / (ended - began), (first - began) * 1000


def _grpc_request(count: int, model: str) -> bytes:
    from omi_adapters.protos import open_inference_grpc_pb2 as pb

    # Raw contents, as tritonclient sends them (the replies are raw too).
    request = pb.ModelInferRequest(model_name=model, id="bench", raw_input_contents=[count.to_bytes(4, "little")])
    request.inputs.add(name="count", datatype="INT32", shape=[1])
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request.SerializeToString()


# A bare HTTP/2 client (RFC 9113) for one gRPC call: grpcio's own Python client spends more per
# message than the server does, and would measure itself.
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x6, 0x7, 0x8
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1
_BIG_WINDOW = 2**31 - 1


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing (RFC 7541, 6.2.2), short strings only."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def _once_grpc(port: int, count: int, model: str) -> tuple[float, float]:
    message = _grpc_request(count, model)
    headers = b"".join(
        _literal(name, value)
        for name, value in (
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", GRPC_STREAM_PATH.encode()),
            (b":authority", f"127.0.0.1:{port}".encode()), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        )
    )  # fmt: skip
    settings = (4).to_bytes(2, "big") + _BIG_WINDOW.to_bytes(4, "big")  # SETTINGS_INITIAL_WINDOW_SIZE
    opening = (
        _PREFACE
        + _frame(_SETTINGS, 0, 0, settings)
        + _frame(_WINDOW_UPDATE, 0, 0, (_BIG_WINDOW - 65535).to_bytes(4, "big"))
        + _frame(_HEADERS, _END_HEADERS, 1, headers)
        + _frame(_DATA, _END_STREAM, 1, b"\0" + len(message).to_bytes(4, "big") + message)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        began = time.perf_counter()
        sock.sendall(opening)
        buffer = bytearray()
        messages = pending = 0  # gRPC messages whole; bytes of the one being read
        first = None
        done = False
        while not done:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the server closed the connection mid-stream")
            buffer += chunk
            at = 0
            while len(buffer) - at >= 9:
                length = int.from_bytes(buffer[at : at + 3], "big")
                if len(buffer) - at < 9 + length:
                    break
                kind, flags = buffer[at + 3], buffer[at + 4]
                payload = memoryview(buffer)[at + 9 : at + 9 + length]
                at += 9 + length
                if kind == _DATA:
                    if first is None:
                        first = time.perf_counter()
                    offset = 0
                    while offset < len(payload):  # messages may span DATA frames
                        if pending:
                            step = min(pending, len(payload) - offset)
                            pending -= step
                            offset += step
                            messages += pending == 0
                        else:
                            size = int.from_bytes(payload[offset + 1 : offset + 5], "big")
                            offset += 5
                            pending = size
                            if size == 0:
                                messages += 1
                elif kind == _SETTINGS and not flags & _ACK:
                    sock.sendall(_frame(_SETTINGS, _ACK, 0, b""))
                elif kind == _PING and not flags & _ACK:
                    sock.sendall(_frame(_PING, _ACK, 0, bytes(payload)))
                elif kind == _HEADERS and flags & _END_STREAM:
                    done = True  # the trailers
                elif kind == _GOAWAY:
                    raise RuntimeError("the server sent GOAWAY")
                del payload
            del buffer[:at]
        ended = time.perf_counter()
    if messages != count + 1:  # the tokens and the empty final response
        raise RuntimeError(f"ModelStreamInfer answered {messages} messages of {count + 1}")
    assert first is not None
    return count / (ended - began), (first - began) * 1000


def measure(protocol: str, port: int, seconds: float, count: int = TOKENS, model: str = "tokens") -> dict[str, Any]:
    """Streams of ``count`` tokens, one after another for about ``seconds`` (3 at least): the medians."""
    rates: list[float] = []
    firsts: list[float] = []
    once = _once_grpc if protocol == "grpc" else _once_sse
    once(port, count, model)  # warm-up
    ends = time.monotonic() + seconds
    while len(rates) < 3 or time.monotonic() < ends:
        rate, first = once(port, count, model)
        rates.append(rate)
        firsts.append(first)
    return {
        "tokens_per_s": statistics.median(rates),
        "ttft_ms": statistics.median(firsts),
        "streams": len(rates),
        "tokens": count,
    }
