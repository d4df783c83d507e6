"""FT-Transformer (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data").

Every numeric feature becomes a token through its own affine map, every categorical feature
through an embedding; a [CLS] token is appended, pre-norm Transformer blocks mix the tokens,
and the head reads the [CLS] token. Defaults are the paper's: d_token 192, 3 blocks, 8 heads,
attention dropout 0.2, FFN dropout 0.1, no residual dropout (``residual_dropout`` 0), ReGLU
feed-forward of 4/3 d_token.
"""
from __future__ import annotations

from pydantic import Field

from .params import NumericEmbeddingParams
from .registry import register_adapter
from .torch_adapter import TorchAdapter


class FTTransformerParams(NumericEmbeddingParams):
    d_token: int = Field(192, gt=0, multiple_of=8)
    n_blocks: int = Field(3, gt=0)
    n_heads: int = Field(8, gt=0)
    attention_dropout: float = Field(0.2, ge=0, lt=1)
    ffn_dropout: float = Field(0.1, ge=0, lt=1)
    residual_dropout: float = Field(0.0, ge=0, lt=1)
    ffn_factor: float = Field(4 / 3, gt=0)


@register_adapter("ft_transformer", framework="torch", tags=("deep", "attention", "gpu", "strong"),
                  description="FT-Transformer: feature tokens + Transformer (numeric and categorical).",
                  defaults=FTTransformerParams().model_dump(),
                  tunable={"num_embeddings": ["none", "periodic"],
                           "frequency_scale": {"low": 0.001, "high": 3.0, "log": True}})
class FTTransformerAdapter(TorchAdapter):
    Params = FTTransformerParams
    categorical_encoding = "ordinal"  # tokens need category indices, not one-hot columns
    fitted_config = (*TorchAdapter.fitted_config, "cat_cardinalities")

    def _fit(self, X, y, X_val, y_val, spec, callback, cat_cardinalities=()) -> None:
        """``cat_cardinalities``: categories (+1 for unknown) of the ordinal-coded columns, which come last."""
        self.cat_cardinalities_ = [int(c) for c in cat_cardinalities]
        super()._fit(X, y, X_val, y_val, spec, callback)

    def _load_weights(self, directory, config) -> None:
        if self.cat_cardinalities_ is None:  # bundles from before: the train step wrote them into params
            self.cat_cardinalities_ = self.params.pop("cat_cardinalities", [])
        super()._load_weights(directory, config)

    def build_net(self, input_shape, n_out):
        from .torch_nets import FTTransformer

        cards = self.cat_cardinalities_
        params = self.Params.model_validate(self.params).model_dump()  # bundles from before lack newer params
        return FTTransformer(n_num=input_shape[0] - len(cards), cat_cardinalities=cards, n_out=n_out, **params)
