"""The model catalog: name → adapter class and its metadata. Adding a model is one entry.

Adapters follow scikit-learn's contract: ``__init__`` stores keyword arguments, ``fit``
returns self, ``predict`` (regression values or class indices) and ``predict_proba``
(classification) work on the float matrix the bundle's feature transform produces, and
``save(dir)`` / ``load(dir)`` round-trip the fitted state.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import NotFittedError, RecipeError
from .batches import Windows
from .params import Params, validate_params


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    framework: str
    tasks: tuple[str, ...]
    description: str
    builder: Callable[..., "Adapter"]
    defaults: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    family: str = "tabular"  # what it reads: "tabular" rows [n, F], "timeseries" windows [n, C, L], "image", "text"
    # What a person choosing a model wants to know (from the model's card; None where not meaningful).
    params_m: float | None = None        # parameters, millions
    input_size: int | None = None        # pixels (square) for images, tokens for text
    batch_size: int | None = None        # a recommended starting point on one GPU
    learning_rate: float | None = None
    # Hyper-parameter search ranges (components/models/tunable.py): model params and train options.
    tunable: dict[str, Any] = field(default_factory=dict)


_CATALOG: dict[str, CatalogEntry] = {}


def register_adapter(name: str, *, framework: str, tasks=("regression", "classification"),
                     description: str = "", defaults: dict[str, Any] | None = None, tags=(), family="tabular",
                     **card):
    """Class decorator (or call with a builder) that puts one model in the catalog; ``card`` holds
    params_m, input_size, batch_size, learning_rate and the ``tunable`` search ranges."""
    def decorate(builder):
        if name in _CATALOG:
            raise ValueError(f"model {name!r} is already registered")
        _CATALOG[name] = CatalogEntry(name, framework, tuple(tasks), description or (builder.__doc__ or "").strip(),
                                      builder, dict(defaults or {}), tuple(tags), family, **card)
        return builder
    return decorate


_OPEN_NAMESPACES: dict[str, Callable[[str], None]] = {}


def register_namespace(prefix: str, register: Callable[[str], None]) -> None:
    """Names under ``prefix`` that the catalog does not list are made on first use by ``register(rest)``
    (``timm:<any timm name>``)."""
    _OPEN_NAMESPACES[prefix] = register


def get_entry(name: str) -> CatalogEntry:
    prefix = name.partition(":")[0] + ":" if ":" in name else ""
    if name not in _CATALOG and prefix in _OPEN_NAMESPACES:
        _OPEN_NAMESPACES[prefix](name[len(prefix):])
    if name not in _CATALOG:
        close = difflib.get_close_matches(name, _CATALOG, n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise RecipeError(f"model.name: unknown model {name!r}{hint} Known: {sorted(_CATALOG)}")
    return _CATALOG[name]


def code_is_pinned(name: str, params: dict[str, Any]) -> bool:
    """Whether the model's params fix its code: an adapter whose code comes from outside (the external
    model's git ``ref``) says so per params; every other model runs the platform's own code."""
    cacheable = getattr(get_entry(name).builder, "cacheable", None)
    return cacheable is None or cacheable(params)


def list_models(task: str | None = None, tag: str | None = None, framework: str | None = None,
                family: str | None = None) -> list[CatalogEntry]:
    return [e for _, e in sorted(_CATALOG.items())
            if (task is None or task in e.tasks) and (tag is None or tag in e.tags)
            and (framework is None or e.framework == framework) and (family is None or e.family == family)]


def build_adapter(name: str, task: str, n_classes: int | None = None, params: dict[str, Any] | None = None,
                  family: str = "tabular", train=None, section=None) -> "Adapter":
    """The one way to make an adapter: defaults, then the recipe's params (``None`` keeps the default).
    With ``train`` (the recipe's TrainSpec), options this model does not honour are refused too.
    ``section`` is the recipe's image or text section: the settings the model reads from it
    (its ``Params`` fields of those names) become params; one it does not read must keep its default."""
    entry = get_entry(name)
    if task not in entry.tasks:
        raise RecipeError(f"model.name: {name!r} does not support task {task!r}; it supports {list(entry.tasks)}")
    if family != entry.family:
        fitting = [e.name for e in list_models(task=task, family=family)]
        raise RecipeError(f"model.name: {name!r} reads {entry.family} data but this recipe is {family}; "
                          f"{family} models are {fitting}")
    given = {k: v for k, v in (params or {}).items() if v is not None}
    from_section = _section_params(entry, family, section, given)
    adapter = entry.builder(task=task, n_classes=n_classes, **{**entry.defaults, **given, **from_section})
    adapter.catalog_name = name
    adapter.check_params()
    if train is not None:
        adapter.check_train(train)
    return adapter


def _section_params(entry: CatalogEntry, family: str, section, given: dict[str, Any]) -> dict[str, Any]:
    """The section settings this model reads, as params; refuses one it would ignore and one also set in
    model.params (each setting has one place)."""
    if section is None:
        return {}
    schema = getattr(entry.builder, "Params", None)
    reads = set(schema.model_fields) & SECTION_SETTINGS if schema is not None else set()
    taken = {}
    for key, field_info in type(section).model_fields.items():
        value, default = getattr(section, key), field_info.get_default(call_default_factory=True)
        if key in reads:
            if key in given and value != default:
                raise RecipeError(f"model.params: {key!r} is also set as {family}.{key}; set it in one place")
            if key not in given and value is not None:
                taken[key] = list(value) if isinstance(value, tuple) else value
        elif key in SECTION_SETTINGS and value != default:
            raise RecipeError(f"{family}.{key}: the {key!r} setting of {entry.name} must be left at its default "
                              f"{default!r}; the model does not use it (it reads {sorted(reads) or 'none'}). "
                              f"Got {value!r} instead.")
    return taken


# Section fields that are model settings (the rest, such as image.layout or text.text_column, say how
# data is read, which every model of the family accepts).
SECTION_SETTINGS = frozenset({"size", "hflip", "scale", "auto_augment", "pretrained", "max_length",
                              "block_size"})


def load_adapter(name: str, directory) -> "Adapter":
    """Rebuild a fitted adapter that ``save`` wrote."""
    adapter = get_entry(name).builder.load(Path(directory))
    adapter.catalog_name = name
    return adapter


# What a TrainSpec field means to a loop that honours it; an adapter lists the ones it honours.
TRAIN_OPTIONS = ("epochs", "batch_size", "learning_rate", "optimizer", "weight_decay", "scheduler", "warmup_epochs",
                 "early_stopping_patience", "seed", "ensemble", "device", "amp", "compile", "grad_clip", "pos_weight",
                 "loss", "soft_f1_alpha", "checkpoint_path", "init_from", "deterministic")
# What a framework's own trainer (Hugging Face, Ultralytics) is given in every case.
TRAINER_OPTIONS = frozenset({"epochs", "batch_size", "learning_rate", "weight_decay", "early_stopping_patience",
                             "seed", "device", "amp", "deterministic"})


class Adapter:
    """What every adapter shares: keyword storage, parameter and train-option checks, the fit/predict
    contract and ``config.json`` save/load. A subclass sets ``Params`` (or overrides ``check_params``;
    the image/text section settings it reads are the ``Params`` fields of those names),
    lists the ``train_options`` its loop honours, and implements ``_fit``, ``_predict`` and its weight
    I/O (``_save_weights`` / ``_load_weights``). Detection adapters' ``_predict`` returns per image
    ``{"boxes" [m, 4] xyxy px, "scores", "classes"}``; segmentation, pose and obb adapters add per-instance
    lists ("masks", "keypoints", "rotated_boxes" + "corners") and a ``validate(X, y)`` giving their metrics
    (``tasks/instances.py``)."""

    Params: ClassVar[type[Params] | None] = None
    train_options: ClassVar[frozenset[str]] = frozenset()
    # Fitted attributes (without their trailing ``_``) that config.json carries beside task, classes and params.
    fitted_config: ClassVar[tuple[str, ...]] = ()
    # Tables and windows arrive as one float array; images (lists of uint8 [H, W, 3]), texts and
    # detection targets (per-image box lists) are passed through as they are.
    array_inputs: ClassVar[bool] = True
    # Time-series windows arrive lazy (``batches.Windows``); an adapter whose loop gathers them batch by
    # batch keeps them so, any other gets them materialised as one [N, C, L] array.
    lazy_windows: ClassVar[bool] = False

    catalog_name: str = ""
    history_: list[dict[str, float]]

    def __init__(self, task: str, n_classes: int | None = None, **params):
        self.task, self.n_classes, self.params = task, n_classes, params

    @property
    def owner(self) -> str:
        """How messages name this model: its catalog name, else its class."""
        return self.catalog_name or type(self).__name__

    # --- checks ------------------------------------------------------------------------------
    def check_params(self) -> None:
        """Raise RecipeError naming the parameter when a value is unknown or out of range."""
        if self.Params is not None:
            validate_params(self.Params, self.owner, self.params)

    def check_train(self, spec) -> None:
        """Refuse a train option this model's loop would ignore (a value other than its default), in
        scikit-learn's message style: the option, the model, what it honours and the value received."""
        defaults = type(spec)()
        for name in TRAIN_OPTIONS:
            value = getattr(spec, name)
            if name not in self.train_options and value != getattr(defaults, name):
                honoured = ", ".join(sorted(self.train_options)) or "none of them"
                raise RecipeError(f"train.{name}: the {name!r} option of {self.owner} must be left at its default "
                                  f"{getattr(defaults, name)!r}; its training does not use it (it honours "
                                  f"{honoured}). Got {value!r} instead.")

    # --- fit / predict -----------------------------------------------------------------------
    def _inputs(self, X):
        if self.lazy_windows and isinstance(X, Windows):
            return X
        return np.asarray(X, dtype=np.float32) if self.array_inputs else X

    def fit(self, X, y, X_val, y_val, train_spec, callback=None, **fit_params) -> "Adapter":
        """``fit_params`` are facts about the data the model needs (FT-Transformer: ``cat_cardinalities``)."""
        self.history_ = []
        targets = np.asarray if self.array_inputs else (lambda v: v)
        self._fit(self._inputs(X), targets(y), self._inputs(X_val), targets(y_val), train_spec,
                  callback or (lambda state: None), **fit_params)
        self.fitted_ = True
        return self

    def _fit(self, X, y, X_val, y_val, spec, callback, **fit_params) -> None:
        raise NotImplementedError

    def _predict(self, X):
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"{type(self).__name__} ({self.catalog_name}) is not fitted; call fit first")

    def predict_raw(self, X) -> np.ndarray:
        """Regression: values, shape [n]. Classification: class probabilities, shape [n, k]."""
        self._check_fitted()
        return self._predict(self._inputs(X))

    def get_params(self) -> dict[str, Any]:
        return dict(self.params)

    # --- persistence: config.json here, weights in the subclass ------------------------------
    def save(self, directory: Path) -> None:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_weights(directory)
        config = {"task": self.task, "n_classes": self.n_classes, "params": self.params}
        config.update({name: getattr(self, f"{name}_", None) for name in self.fitted_config})
        (directory / "config.json").write_text(json.dumps(config))

    @classmethod
    def load(cls, directory: Path) -> "Adapter":
        directory = Path(directory)
        cfg = json.loads((directory / "config.json").read_text())
        self = cls(cfg["task"], cfg["n_classes"], **cfg["params"])
        for name in cls.fitted_config:
            setattr(self, f"{name}_", cfg.get(name))
        self._load_weights(directory, cfg)
        self.fitted_ = True
        return self

    def _save_weights(self, directory: Path) -> None:
        raise NotImplementedError

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        """Rebuild the fitted model from ``directory``; ``config`` is config.json as written (older
        bundles may lack keys that newer ones carry)."""
        raise NotImplementedError
