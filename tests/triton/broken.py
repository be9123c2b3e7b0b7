"""A model whose eager load fails: Triton must report it unavailable, with the reason."""

from __future__ import annotations

from omi_adapters import Tensor, model


@model(name="broken", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])], load="eager")
class Broken:
    def load(self) -> None:
        raise FileNotFoundError("the weights are missing")

    def predict(self, X):
        return X


@model(name="broken_lazy", inputs=[Tensor("X", "FP32", [-1])], outputs=[Tensor("Y", "FP32", [-1])], load="lazy")
class BrokenLazy:
    def load(self) -> None:
        raise OSError("the disk is gone")

    def predict(self, X):
        return X
