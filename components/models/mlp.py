"""PyTorch multilayer perceptron for tables. torch is imported only when fitting or loading."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from .params import Params, validate_params
from .registry import Adapter, register_adapter


class MLPParams(Params):
    hidden_sizes: list[int] = Field([256, 256], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"


@register_adapter("mlp", framework="torch", tags=("deep", "fast", "gpu"),
                  description="Multilayer perceptron (hidden sizes, dropout, batch norm, activation).",
                  defaults=MLPParams().model_dump())
class MLPAdapter(Adapter):
    def __init__(self, task: str, n_classes: int | None = None, **params):
        self.task, self.n_classes, self.params = task, n_classes, params

    def check_params(self) -> None:
        validate_params(MLPParams, "mlp", self.params)

    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        from .torch_training import fit_module
        from .torch_nets import build_mlp

        self.n_features_ = X.shape[1]
        self.net_ = build_mlp(self.n_features_, self._n_out(), **self.params)
        self.history_ = fit_module(self.net_, X, y, X_val, y_val, self.task, spec, callback)

    def _n_out(self) -> int:
        return 1 if self.task == "regression" else int(self.n_classes)

    def _predict(self, X) -> np.ndarray:
        from .torch_training import predict_module

        out = predict_module(self.net_, X)
        if self.task == "regression":
            return out[:, 0]
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def save(self, directory: Path) -> None:
        import torch

        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net_.state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(json.dumps(
            {"task": self.task, "n_classes": self.n_classes, "n_features": self.n_features_, "params": self.params}))

    @classmethod
    def load(cls, directory: Path) -> "MLPAdapter":
        import torch
        from .torch_nets import build_mlp

        cfg = json.loads((directory / "config.json").read_text())
        self = cls(cfg["task"], cfg["n_classes"], **cfg["params"])
        self.n_features_ = cfg["n_features"]
        self.net_ = build_mlp(self.n_features_, self._n_out(), **self.params)
        self.net_.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
        self.net_.eval()
        self.fitted_ = True
        return self
