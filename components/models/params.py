"""Parameter validation shared by adapters, in scikit-learn's message style."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RecipeError


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NumericEmbeddingParams(Params):
    """How a table model turns each numeric feature into a vector: ``none`` (the model's own linear map) or
    ``periodic`` (PLR, Gorishniy et al. 2022: cos/sin of trained frequencies, a linear map, ReLU).
    ``frequency_scale`` is the spread of the initial frequencies (inputs are scaled, about N(0, 1))."""
    num_embeddings: Literal["none", "periodic"] = "none"
    n_frequencies: int = Field(48, gt=0)
    frequency_scale: float = Field(0.01, gt=0)


class ImageSettings(Params):
    """What every image model reads from the recipe's image section (a model adds what else it reads)."""
    size: int | None = None      # square input size; the model's native one if unset
    hflip: float = 0.5           # augmentation: probability of a horizontal flip
    pretrained: bool = False


def validate_params(schema: type[Params], owner: str, params: dict[str, Any]) -> Params:
    try:
        return schema.model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            import difflib

            close = difflib.get_close_matches(name, schema.model_fields, n=2)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise RecipeError(f"model.params: {name!r} is not a parameter of {owner}{hint}; "
                              f"valid parameters are {sorted(schema.model_fields)}") from None
        raise RecipeError(f"model.params: the {name!r} parameter of {owner} {err['msg'].lower()}. "
                          f"Got {err.get('input')!r} instead.") from None
