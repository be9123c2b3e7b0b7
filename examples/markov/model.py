"""A character-level Markov chain that streams text: a generator predict, with no download.

At load, the chain learns from ``corpus.txt`` beside this file (or ``$MARKOV_CORPUS``) which
characters follow each run of :data:`ORDER` characters, and how often. Predict continues the
prompt one character at a time, drawing each from what followed the last :data:`ORDER`
characters in the text, and yields each as its own response: over ``generate_stream`` every
character is one server-sent event, over gRPC's ``ModelStreamInfer`` one message. The draws
come from a generator seeded by ``seed``, so one prompt and seed give the same text wherever
the model runs (``omi serve``, or Triton after ``omi build triton``).

    omi serve examples/markov/model.py
    curl -N -d '{"text_input": "The river", "max_tokens": 40}' \\
        localhost:8080/v2/models/markov/generate_stream
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from omi_adapters import Tensor, model

CORPUS = Path(os.environ.get("MARKOV_CORPUS", Path(__file__).with_name("corpus.txt")))
#: How many characters of context choose the next one.
ORDER = 4
#: The most characters one request may ask for.
MAX_TOKENS = 10_000


@model(
    name="markov",
    version="1",
    inputs=[
        Tensor("text_input", "BYTES", [1], description="the prompt the text continues"),
        Tensor("max_tokens", "INT32", [1], optional=True, description="how many characters to generate (64)"),
        Tensor("seed", "INT64", [1], optional=True, description="the seed of the draws (0)"),
    ],
    outputs=[Tensor("text_output", "BYTES", [1], description="one generated character")],
    description={"summary": "Streams text one character at a time from a Markov chain learnt at load."},
)
class Markov:
    def load(self) -> None:
        text = CORPUS.read_text(encoding="utf-8")
        counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for i in range(len(text) - ORDER):
            counts[text[i : i + ORDER]][text[i + ORDER]] += 1
        # Sorted, so that the draws do not depend on the order a dict was filled in.
        self.table = {
            context: ("".join(sorted(c)), np.cumsum([c[k] for k in sorted(c)])) for context, c in counts.items()
        }
        self.starts = sorted(self.table)
        self.text = text

    def predict(
        self,
        text_input: np.ndarray,
        max_tokens: np.ndarray | None = None,
        seed: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        prompt = bytes(text_input[0]).decode("utf-8", "replace")
        count = 64 if max_tokens is None else int(max_tokens[0])
        if not 0 <= count <= MAX_TOKENS:
            from omi_adapters import InvalidInputError

            raise InvalidInputError(f"max_tokens must be between 0 and {MAX_TOKENS}, got {count}")
        rng = np.random.default_rng(0 if seed is None else int(seed[0]))
        context = self._context(prompt, rng)
        for _ in range(count):
            entry = self.table.get(context)
            if entry is None:  # the very end of the text: start again somewhere
                context = self.starts[int(rng.integers(len(self.starts)))]
                entry = self.table[context]
            chars, cumulative = entry
            char = chars[int(np.searchsorted(cumulative, rng.integers(cumulative[-1]), side="right"))]
            context = context[1:] + char
            yield np.array([char.encode("utf-8")], dtype=object)

    def _context(self, prompt: str, rng: np.random.Generator) -> str:
        """The last ORDER characters of the prompt, or, when the text never has them, a random start."""
        tail = prompt[-ORDER:]
        if tail in self.table:
            return tail
        return self.starts[int(rng.integers(len(self.starts)))]
