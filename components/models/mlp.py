"""PyTorch multilayer perceptron for tables."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .params import NumericEmbeddingParams
from .registry import register_adapter
from .torch_adapter import TorchAdapter


class MLPParams(NumericEmbeddingParams):
    hidden_sizes: list[int] = Field([256, 256], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    d_embedding: int = Field(24, gt=0, description="Width of each input column's periodic embedding.")


@register_adapter("mlp", framework="torch", tags=("deep", "fast", "gpu"),
                  description="Multilayer perceptron (hidden sizes, dropout, batch norm, activation; "
                              "periodic numeric embeddings: MLP-PLR).",
                  defaults=MLPParams().model_dump(),
                  tunable={"hidden_sizes": [[64, 64], [128, 128], [256, 256], [256, 256, 256]],
                           "dropout": {"low": 0.0, "high": 0.3}, "num_embeddings": ["none", "periodic"],
                           "frequency_scale": {"low": 0.001, "high": 3.0, "log": True}})
class MLPAdapter(TorchAdapter):
    Params = MLPParams

    def build_net(self, input_shape, n_out):
        from .torch_nets import build_mlp

        return build_mlp(input_shape[0], n_out, **self.Params.model_validate(self.params).model_dump())
