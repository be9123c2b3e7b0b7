"""An OMI server in this process: a grpc.aio server on a loopback port, run on its own loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane
from omi_adapters.grpc_omi import add_to_server
from omi_adapters.limits import Limits
from omi_adapters.protos import modzy_model_pb2_grpc as pb_grpc


@dataclass
class Served:
    port: int
    stub: pb_grpc.ModzyModelStub
    channel: grpc.Channel
    shutdowns: list[int] = field(default_factory=list)


def fresh(model: Model) -> Model:
    """A new, unloaded Model of the same declaration: each test server starts from scratch."""
    return Model(
        model.target, name=model.name, version=model.version, inputs=model.inputs, outputs=model.outputs,
        load=model.load_policy.value, max_batch_size=model.max_batch_size, ready_timeout=model.ready_timeout,
        metadata=model.metadata, max_concurrency=model.max_concurrency, max_queue=model.max_queue,
        max_queue_delay=model.batch_policy.max_queue_delay if model.batch_policy else 0.0,
        preferred_batch_sizes=model.batch_policy.preferred_batch_sizes if model.batch_policy else (),
    )  # fmt: skip


@contextmanager
def serve_in_process(*models: Model, name: str | None = None, workers: int | None = None) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    dataplane = DataPlane([fresh(m) for m in models], limits=Limits(predict_threads=workers))
    dataplane.start()
    shutdowns: list[int] = []

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        add_to_server(server, dataplane, shutdown=lambda: shutdowns.append(1), model=name)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(port=port, stub=pb_grpc.ModzyModelStub(channel), channel=channel, shutdowns=shutdowns)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        # Without waiting: a predict that outlived its run timeout may still be sleeping.
        dataplane.close()
