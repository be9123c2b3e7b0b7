"""A text model with BYTES in and out: upper-cases each text and counts its words."""

import numpy as np

from omi_adapters import Tensor, model


@model(
    name="text",
    version="1",
    inputs=[Tensor("TEXT", "BYTES", [-1], media_types=["text/plain", "application/json"])],
    outputs=[Tensor("UPPER", "BYTES", [-1]), Tensor("WORDS", "INT32", [-1])],
    description="Upper-cases UTF-8 texts and counts their words.",
    max_batch_size=32,
)
def text(TEXT: np.ndarray) -> dict[str, np.ndarray]:
    decoded = [item.decode("utf-8", "replace") for item in TEXT]
    return {
        "UPPER": np.array([t.upper().encode("utf-8") for t in decoded], dtype=object),
        "WORDS": np.array([len(t.split()) for t in decoded], dtype=np.int32),
    }
