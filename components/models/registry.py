"""The model catalog: name → adapter class and its metadata. Adding a model is one entry.

Adapters follow scikit-learn's contract: ``__init__`` stores keyword arguments, ``fit``
returns self, ``predict`` (regression values or class indices) and ``predict_proba``
(classification) work on the float matrix the bundle's feature transform produces, and
``save(dir)`` / ``load(dir)`` round-trip the fitted state.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import NotFittedError
from ..recipe import RecipeError


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


_CATALOG: dict[str, CatalogEntry] = {}


def register_adapter(name: str, *, framework: str, tasks=("regression", "classification"),
                     description: str = "", defaults: dict[str, Any] | None = None, tags=(), family="tabular",
                     **card):
    """Class decorator (or call with a builder) that puts one model in the catalog; ``card`` holds
    params_m, input_size, batch_size, learning_rate."""
    def decorate(builder):
        if name in _CATALOG:
            raise ValueError(f"model {name!r} is already registered")
        _CATALOG[name] = CatalogEntry(name, framework, tuple(tasks), description or (builder.__doc__ or "").strip(),
                                      builder, dict(defaults or {}), tuple(tags), family, **card)
        return builder
    return decorate


def _load_builtin() -> None:
    # Importing the modules registers their entries; torch is imported only when an MLP is fit.
    from . import ft_transformer, hf_models, mlp, sequence, sklearn_models, timm_models, yolo  # noqa: F401


def get_entry(name: str) -> CatalogEntry:
    _load_builtin()
    if name not in _CATALOG and name.startswith("timm:"):
        from .timm_models import register_timm  # any timm name works; the entry is made on first use

        register_timm(name[len("timm:"):], description=f"timm {name[5:]} (not described in this catalog)")
    if name not in _CATALOG:
        close = difflib.get_close_matches(name, _CATALOG, n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise RecipeError(f"model.name: unknown model {name!r}{hint} Known: {sorted(_CATALOG)}")
    return _CATALOG[name]


def list_models(task: str | None = None, tag: str | None = None, framework: str | None = None,
                family: str | None = None) -> list[CatalogEntry]:
    _load_builtin()
    return [e for _, e in sorted(_CATALOG.items())
            if (task is None or task in e.tasks) and (tag is None or tag in e.tags)
            and (framework is None or e.framework == framework) and (family is None or e.family == family)]


def build_adapter(name: str, task: str, n_classes: int | None = None, params: dict[str, Any] | None = None,
                  family: str = "tabular") -> "Adapter":
    """The one way to make an adapter: defaults, then the recipe's params (``None`` keeps the default)."""
    entry = get_entry(name)
    if task not in entry.tasks:
        raise RecipeError(f"model.name: {name!r} does not support task {task!r}; it supports {list(entry.tasks)}")
    if family != entry.family:
        fitting = [e.name for e in list_models(task=task, family=family)]
        raise RecipeError(f"model.name: {name!r} reads {entry.family} data but this recipe is {family}; "
                          f"{family} models are {fitting}")
    merged = {**entry.defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
    adapter = entry.builder(task=task, n_classes=n_classes, **merged)
    adapter.catalog_name = name
    adapter.check_params()
    return adapter


def load_adapter(name: str, directory) -> "Adapter":
    """Rebuild a fitted adapter that ``save`` wrote."""
    builder = get_entry(name).builder
    adapter = getattr(builder, "func", builder).load(directory)  # table entries are functools.partial
    adapter.catalog_name = name
    return adapter


class Adapter:
    """Shared behaviour; subclasses implement ``check_params``, ``_fit``, ``_predict``, ``save``, ``load``.
    Detection adapters' ``_predict`` returns per image ``{"boxes" [m, 4] xyxy px, "scores", "classes"}``."""

    catalog_name: str = ""
    history_: list[dict[str, float]]

    def check_params(self) -> None:
        """Raise RecipeError naming the parameter when a value is out of range."""

    # Tables and windows arrive as one float array; images (lists of uint8 [H, W, 3]), texts and
    # detection targets (per-image box lists) are passed through as they are.
    array_inputs = True

    def _inputs(self, X):
        return np.asarray(X, dtype=np.float32) if self.array_inputs else X

    def fit(self, X, y, X_val, y_val, train_spec, callback=None) -> "Adapter":
        self.history_ = []
        targets = np.asarray if self.array_inputs else (lambda v: v)
        self._fit(self._inputs(X), targets(y), self._inputs(X_val), targets(y_val), train_spec,
                  callback or (lambda state: None))
        self.fitted_ = True
        return self

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"{type(self).__name__} ({self.catalog_name}) is not fitted; call fit first")

    def predict_raw(self, X) -> np.ndarray:
        """Regression: values, shape [n]. Classification: class probabilities, shape [n, k]."""
        self._check_fitted()
        return self._predict(self._inputs(X))

    def get_params(self) -> dict[str, Any]:
        return dict(self.params)
