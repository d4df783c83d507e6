"""Sequence models for time-series windows [n, C, L]: LSTM and a 1-D CNN."""
from __future__ import annotations

from pydantic import Field

from .params import Params
from .registry import register_adapter
from .torch_adapter import TorchAdapter


class LSTMParams(Params):
    hidden_size: int = Field(64, gt=0)
    num_layers: int = Field(1, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    bidirectional: bool = False


class CNN1dParams(Params):
    channels: list[int] = Field([32, 64], min_length=1)
    kernel_size: int = Field(5, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)


@register_adapter("lstm", framework="torch", family="timeseries", tags=("deep", "recurrent", "gpu"),
                  description="LSTM over the window; the head reads the last step.",
                  defaults=LSTMParams().model_dump())
class LSTMAdapter(TorchAdapter):
    Params = LSTMParams

    def build_net(self, input_shape, n_out):
        from .torch_nets import LSTMNet

        return LSTMNet(input_shape[0], n_out, **self.params)


@register_adapter("cnn1d", framework="torch", family="timeseries", tags=("deep", "convolutional", "fast", "gpu"),
                  description="1-D CNN over time; the head reads the pooled window and its last step.",
                  defaults=CNN1dParams().model_dump())
class CNN1dAdapter(TorchAdapter):
    Params = CNN1dParams

    def build_net(self, input_shape, n_out):
        from .torch_nets import CNN1dNet

        return CNN1dNet(input_shape[0], n_out, **self.params)
