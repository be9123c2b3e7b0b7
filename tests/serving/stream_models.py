"""Streaming models the streaming tests serve beside the Markov example.

Each generator notes, in a file of the folder ``$STREAM_MARKS``, when it starts, each item it
yields (``produced``) and when its ``finally`` block ran (``closed``), so that a test in
another process can see whether the server closed it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np

from omi_adapters import Tensor, model

TOKEN = [Tensor("text_output", "BYTES", [1])]


def _mark(tag: bytes, event: str) -> None:
    folder = os.environ.get("STREAM_MARKS")
    if folder:
        with open(Path(folder) / tag.decode(), "a") as file:
            file.write(event + "\n")


def _token(i: int) -> np.ndarray:
    return np.array([f"t{i}".encode()], dtype=object)


@model(name="fails_midway", inputs=[Tensor("tag", "BYTES", [1])], outputs=TOKEN)
def fails_midway(tag: np.ndarray) -> Iterator[np.ndarray]:
    """Two tokens, then an error."""
    yield _token(0)
    yield _token(1)
    raise RuntimeError("the chain broke after two tokens")


@model(name="endless", inputs=[Tensor("tag", "BYTES", [1])], outputs=TOKEN, max_concurrency=1)
def endless(tag: np.ndarray) -> Iterator[np.ndarray]:
    """A token every 10 ms until closed; one stream at a time."""
    _mark(tag[0], "started")
    i = 0
    try:
        while True:
            _mark(tag[0], "produced")
            yield _token(i)
            i += 1
            time.sleep(0.01)
    finally:
        _mark(tag[0], "closed")


@model(name="endless_async", inputs=[Tensor("tag", "BYTES", [1])], outputs=TOKEN)
async def endless_async(tag: np.ndarray) -> AsyncIterator[np.ndarray]:
    """The async twin of ``endless``."""
    i = 0
    try:
        while True:
            yield _token(i)
            i += 1
            await asyncio.sleep(0.01)
    finally:
        _mark(tag[0], "closed")


@model(name="flood", inputs=[Tensor("tag", "BYTES", [1])], outputs=TOKEN)
def flood(tag: np.ndarray) -> Iterator[np.ndarray]:
    """100 kB tokens as fast as they can be made: the reader's pace must hold it back."""
    big = np.array([b"x" * 100_000], dtype=object)
    try:
        while True:
            _mark(tag[0], "produced")
            yield big
    finally:
        _mark(tag[0], "closed")


@model(name="wrong_yield", inputs=[Tensor("tag", "BYTES", [1])], outputs=TOKEN)
def wrong_yield(tag: np.ndarray) -> Iterator[np.ndarray]:
    """A good token, then one of the wrong shape."""
    yield _token(0)
    yield np.array([b"a", b"b"], dtype=object)
