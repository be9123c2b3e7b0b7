"""A small OIP REST server that breaks the protocol on purpose, for ``omi check`` to catch.

It serves one model ``m`` (``X FP32 [-1, 2]`` -> ``Y FP32 [-1, 2]``), whose metadata ``huge``
shares but for an input too large to send, and gets these wrong:
the reply's output datatype (FP64), the request ``id`` (not echoed), an input of the wrong
datatype (accepted), an unknown model (500 with a text body) and malformed JSON (400 with
``{"message"}`` instead of ``{"error"}``). Everything else it gets right, so those rows pass.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

METADATA = {
    "name": "m",
    "versions": ["1"],
    "platform": "python",
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 2]}],
    "outputs": [{"name": "Y", "datatype": "FP32", "shape": [-1, 2]}],
}
MODEL_PATHS = ("/v2/models/m", "/v2/models/m/versions/1")
#: A model whose smallest request would be 4 GB of FP32.
HUGE = {**METADATA, "name": "huge", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1_000_000, 1000]}]}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path
        if path in ("/v2/health/live", "/v2/health/ready") or path in [p + "/ready" for p in MODEL_PATHS]:
            self.send(200, b"", "text/plain")
        elif path == "/v2":
            self.send(200, {"name": "broken", "version": "0", "extensions": []})
        elif path in MODEL_PATHS:
            self.send(200, METADATA)
        elif path == "/v2/models/huge":
            self.send(200, HUGE)
        else:
            self.send(500, b"Internal Server Error", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path not in [p + "/infer" for p in MODEL_PATHS]:
            self.send(500, b"Internal Server Error", "text/plain")
            return
        try:
            request = json.loads(body)
        except ValueError:
            self.send(400, {"message": "bad JSON"})
            return
        [x] = request["inputs"]
        if len(x["shape"]) != 2:
            self.send(400, {"error": f"X: expected rank 2, got {x['shape']}"})
            return
        output = {"name": "Y", "datatype": "FP64", "shape": x["shape"], "data": x["data"]}
        self.send(200, {"model_name": "m", "model_version": "1", "outputs": [output]})


@contextmanager
def serve(port: int = 0) -> Iterator[str]:
    """Serve on loopback (a free port by default) in a thread; yields ``host:port``."""
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
