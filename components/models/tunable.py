"""Search spaces for hyper-parameter tuning: the ranges a catalog entry declares, which a recipe's
``tune.space`` overrides key by key.

A range is ``{type: int, low, high[, step][, log]}``, ``{type: float, low, high[, log]}`` or
``{type: categorical, choices: [...]}``; a plain list is shorthand for categorical choices, and
``type`` may be left out when the bounds say it (two integers: int, else float). ``null`` in
``tune.space`` drops a catalog range (the recipe's value is then kept). A key names a parameter of
the model (``model.params``; its ``Params`` field or, for scikit-learn, its estimator's parameter)
or a train option its loop honours (``train.<option>``); the model's parameter wins where both have
the name (``hist_gradient_boosting``'s ``learning_rate``).

Every train-honouring model starts from ``TRAIN_RANGES`` (for the options its loop honours); a
catalog entry adds its own with ``register_adapter(..., tunable={...})``. Nothing here imports
optuna: ``suggest`` takes any object with optuna's ``Trial.suggest_*`` methods.
"""
from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import RecipeError


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntRange(_Range):
    type: Literal["int"] = "int"
    low: int
    high: int
    step: int = Field(1, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> "IntRange":
        if self.low >= self.high:
            raise ValueError(f"low {self.low} must be less than high {self.high}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log int range needs low >= 1 and step 1")
        return self


class FloatRange(_Range):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> "FloatRange":
        if self.low >= self.high:
            raise ValueError(f"low {self.low} must be less than high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class Categorical(_Range):
    type: Literal["categorical"] = "categorical"
    choices: list[Any] = Field(min_length=1)


RANGE_TYPES: dict[str, type[_Range]] = {"int": IntRange, "float": FloatRange, "categorical": Categorical}
Range = IntRange | FloatRange | Categorical

# Starting ranges for the train options a loop honours (a catalog entry's own ranges replace these).
TRAIN_RANGES: dict[str, Any] = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": [64, 128, 256, 512],
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
}
# Train options a search may vary (the others say where and how a run happens, not what it learns).
TUNABLE_TRAIN_OPTIONS = ("epochs", "batch_size", "learning_rate", "optimizer", "weight_decay", "scheduler",
                         "warmup_epochs", "early_stopping_patience", "grad_clip", "pos_weight", "loss", "soft_f1_alpha")


def parse_range(name: str, value: Any) -> Range:
    """One range from recipe or catalog data; ``ValueError`` naming the key when it is malformed."""
    if isinstance(value, (list, tuple)):
        value = {"type": "categorical", "choices": list(value)}
    if not isinstance(value, dict):
        raise ValueError(f"the range of {name!r} must be a mapping such as {{low: 0.0, high: 0.5}} or a list of "
                         f"choices; got {value!r}")
    kind = value.get("type")
    if kind is None:
        ints = all(isinstance(value.get(b), int) and not isinstance(value.get(b), bool) for b in ("low", "high"))
        kind = "categorical" if "choices" in value else "int" if ints else "float"
    if kind not in RANGE_TYPES:
        raise ValueError(f"the range of {name!r} has type {kind!r}; expected one of {list(RANGE_TYPES)}")
    try:
        return RANGE_TYPES[kind].model_validate({**value, "type": kind})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        detail = f"{where}: {err['msg']}" if where else err["msg"].removeprefix("Value error, ")
        raise ValueError(f"the {kind} range of {name!r} is invalid ({detail})") from None


def parse_space(space: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """A recipe's ``tune.space`` in canonical form (every range a mapping with its type; ``None`` kept)."""
    return {name: None if value is None else parse_range(name, value).model_dump() for name, value in space.items()}


@dataclass(frozen=True)
class Dimension:
    """One searched value: where it goes (``model`` params or ``train`` options) and its range."""
    name: str
    target: Literal["model", "train"]
    range: Range

    def suggest(self, trial) -> Any:
        r = self.range
        if isinstance(r, IntRange):
            return trial.suggest_int(self.name, r.low, r.high, step=r.step, log=r.log)
        if isinstance(r, FloatRange):
            return trial.suggest_float(self.name, r.low, r.high, log=r.log)
        if _scalars(r.choices):
            return trial.suggest_categorical(self.name, r.choices)
        # optuna stores only scalar choices; lists (hidden_sizes) travel as their JSON text
        return json.loads(trial.suggest_categorical(self.name, [json.dumps(c) for c in r.choices]))

    def internal(self, value: Any) -> Any:
        """``value`` as ``suggest`` names it to optuna (for ``enqueue_trial``); None when outside the range."""
        r = self.range
        if isinstance(r, Categorical):
            if value not in r.choices:
                return None
            return value if _scalars(r.choices) else json.dumps(value)
        return value if isinstance(value, (int, float)) and r.low <= value <= r.high else None


def _scalars(choices: list[Any]) -> bool:
    return all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)


def search_space(recipe, section=None) -> dict[str, Dimension]:
    """The recipe's search space: the catalog's ranges for its model, overridden by ``tune.space``;
    ``RecipeError`` naming the key for an unknown name, a range of the wrong type or a bound the
    parameter refuses. ``section``: the family's options section, as train passes it to the model."""
    from .registry import build_adapter, get_entry

    entry, spec = get_entry(recipe.model.name), recipe.train
    n_classes = 2 if recipe.task == "classification" else None
    base = build_adapter(recipe.model.name, recipe.task, n_classes, recipe.model.params, recipe.family,
                         section=section)
    params, options = _param_types(base), [o for o in TUNABLE_TRAIN_OPTIONS if o in base.train_options]
    declared = {**{k: v for k, v in TRAIN_RANGES.items() if k in options}, **entry.tunable}
    given = recipe.tune.space if recipe.tune is not None else {}
    allowed = sorted({*params, *options})
    for name in [*given, *entry.tunable]:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=2)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise RecipeError(f"tune.space: {name!r} is neither a parameter of {recipe.model.name} nor a train option "
                              f"its training honours{hint}; tunable names are {allowed}")
    dims: dict[str, Dimension] = {}
    for name, value in {**declared, **given}.items():
        if value is None:
            continue
        try:
            rng = parse_range(name, value)
        except ValueError as exc:
            raise RecipeError(f"tune.space.{name}: {exc}") from None
        target = "model" if name in params else "train"
        kinds = params[name] if target == "model" else _kinds(type(spec).model_fields[name].annotation)
        _check_kind(name, rng, kinds, f"the {recipe.model.name} parameter {name!r}" if target == "model"
                    else f"train.{name}")
        for point in _points(rng):
            _check_point(recipe, base, Dimension(name, target, rng), point, n_classes, section)
        dims[name] = Dimension(name, target, rng)
    return dims


def _param_types(adapter) -> dict[str, set[type] | None]:
    """The model's parameter names → the Python types each accepts (None: unknown, any range is tried)."""
    if adapter.Params is not None:
        return {name: _kinds(f.annotation) for name, f in adapter.Params.model_fields.items()}
    make = getattr(adapter, "_make", None)  # scikit-learn: the estimator's own parameters
    if make is None:
        return {}
    return {name: ({type(v)} if isinstance(v, (bool, int, float, str)) else None)
            for name, v in make().get_params().items()}


def _kinds(annotation) -> set[type] | None:
    """The base types an annotation admits: int | float | None → {int, float, NoneType}."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return {type(a) for a in typing.get_args(annotation)}
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: set[type] = set()
        for arg in typing.get_args(annotation):
            sub = _kinds(arg)
            if sub is None:
                return None
            out |= sub
        return out
    if isinstance(origin, type):
        return {origin}
    return {annotation} if isinstance(annotation, type) else None


def _check_kind(name: str, rng: Range, kinds: set[type] | None, owner: str) -> None:
    if kinds is None or isinstance(rng, Categorical):
        return
    if (float in kinds) if isinstance(rng, FloatRange) else bool(kinds & {int, float}):
        return
    shown = " | ".join(sorted(k.__name__ for k in kinds))
    fits = "an int range" if int in kinds else "a list of choices"
    raise RecipeError(f"tune.space.{name}: {'an' if rng.type == 'int' else 'a'} {rng.type} range does not fit "
                      f"{owner}, which takes {shown}; give {fits}")


def _points(rng: Range) -> list[Any]:
    if isinstance(rng, Categorical):
        return list(rng.choices)
    return [rng.low, rng.high]


def _check_point(recipe, base, dim: Dimension, value: Any, n_classes, section) -> None:
    """The model or train option accepts ``value`` (each bound and choice is tried once)."""
    from .registry import build_adapter

    try:
        if dim.target == "model":
            build_adapter(recipe.model.name, recipe.task, n_classes, {**base.params, dim.name: value},
                          recipe.family, section=section)
        else:
            spec = type(recipe.train).model_validate({**recipe.train.model_dump(), dim.name: value})
            base.check_train(spec)
    except ValidationError as exc:
        raise RecipeError(f"tune.space.{dim.name}: {value!r} is not a valid train.{dim.name} "
                          f"({exc.errors()[0]['msg'].lower()})") from None
    except RecipeError as exc:
        raise RecipeError(f"tune.space.{dim.name}: the range holds {value!r}, which {recipe.model.name} refuses "
                          f"({exc})") from None


def trial_values(space: dict[str, Dimension], trial) -> dict[str, dict[str, Any]]:
    """One trial's values: ``{"model": {param: v}, "train": {option: v}}``."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for dim in space.values():
        out[dim.target][dim.name] = dim.suggest(trial)
    return out


def current_values(recipe, space: dict[str, Dimension]) -> dict[str, Any]:
    """The recipe's own value of each searched name (a model param unset in the recipe: the catalog
    default), as optuna names it, for ``enqueue_trial``; values outside their range are left out."""
    from .registry import get_entry

    params = {**get_entry(recipe.model.name).defaults, **{k: v for k, v in recipe.model.params.items() if v is not None}}
    out = {}
    for dim in space.values():
        value = params.get(dim.name) if dim.target == "model" else getattr(recipe.train, dim.name)
        internal = dim.internal(value)
        if internal is not None:
            out[dim.name] = internal
    return out


def with_values(recipe, values: dict[str, dict[str, Any]] | str | None):
    """``recipe`` (or a step's view of it) with searched values applied: model params merged over
    the recipe's, train options validated. ``values`` as ``trial_values`` gives it or its JSON; empty
    keeps the recipe."""
    if isinstance(values, str):
        values = json.loads(values) if values.strip() else None
    if not values:
        return recipe
    model = recipe.model.model_copy(update={"params": {**recipe.model.params, **values.get("model", {})}})
    train = type(recipe.train).model_validate({**recipe.train.model_dump(), **values.get("train", {})})
    return recipe.model_copy(update={"model": model, "train": train})
