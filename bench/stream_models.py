"""The streaming model of ``make bench``: a plain sync generator yielding N small responses.

It runs as a user's generator does by default, in one of the model's threads, handing each
token to the server through the bounded buffer of :mod:`omi_adapters.streaming`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np

from omi_adapters import Tensor, model

TOKEN = np.array([b"tok"], dtype=object)


@model(
    name="tokens",
    inputs=[Tensor("count", "INT32", [1])],
    outputs=[Tensor("text_output", "BYTES", [1])],
)
def tokens(count: np.ndarray) -> Iterator[np.ndarray]:
    for _ in range(int(count[0])):
        yield TOKEN


@model(
    name="tokens_async",
    inputs=[Tensor("count", "INT32", [1])],
    outputs=[Tensor("text_output", "BYTES", [1])],
)
async def tokens_async(count: np.ndarray) -> AsyncIterator[np.ndarray]:
    for _ in range(int(count[0])):
        yield TOKEN
