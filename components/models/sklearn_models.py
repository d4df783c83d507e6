"""scikit-learn estimators behind the adapter interface. Each catalog entry is one table row."""
from __future__ import annotations

import functools
import importlib
from pathlib import Path

import numpy as np

from ..recipe import RecipeError
from .registry import Adapter, register_adapter

# name: (regressor, classifier, defaults, tags, description)
SKLEARN_MODELS = {
    "random_forest": ("sklearn.ensemble.RandomForestRegressor", "sklearn.ensemble.RandomForestClassifier",
                      {"n_estimators": 200, "n_jobs": -1, "random_state": 0}, ("trees", "robust"),
                      "Random forest of decision trees."),
    "extra_trees": ("sklearn.ensemble.ExtraTreesRegressor", "sklearn.ensemble.ExtraTreesClassifier",
                    {"n_estimators": 200, "n_jobs": -1, "random_state": 0}, ("trees", "fast"),
                    "Extremely randomised trees."),
    "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingRegressor",
                               "sklearn.ensemble.HistGradientBoostingClassifier",
                               {"max_iter": 300, "random_state": 0}, ("trees", "fast", "strong"),
                               "Histogram gradient boosting (LightGBM-style)."),
    "linear": ("sklearn.linear_model.Ridge", "sklearn.linear_model.LogisticRegression",
               {}, ("linear", "fast", "baseline"), "Ridge regression / logistic regression."),
}


class SklearnAdapter(Adapter):
    def __init__(self, task: str, n_classes: int | None = None, *, estimators: tuple[str, str], **params):
        self.task, self.n_classes, self.estimators, self.params = task, n_classes, estimators, params

    def _make(self):
        module, _, cls = self.estimators[self.task == "classification"].rpartition(".")
        return getattr(importlib.import_module(module), cls)()

    def check_params(self) -> None:
        est = self._make()
        try:
            est.set_params(**self.params)
            est._validate_params()
        except (ValueError, TypeError) as exc:  # sklearn's messages already name parameter and owner
            raise RecipeError(f"model.params: {exc}") from None

    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        self.estimator_ = self._make().set_params(**self.params).fit(X, y)
        pred = self._predict(X_val)
        if self.task == "regression":
            val_loss = float(np.mean((pred - y_val) ** 2))
        else:
            val_loss = float(-np.mean(np.log(np.clip(pred[np.arange(len(y_val)), y_val], 1e-12, 1))))
        state = {"epoch": 1, "val_loss": val_loss}
        self.history_ = [state]
        callback(state)

    def _predict(self, X) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.estimator_.predict(X), dtype=np.float64)
        proba = np.zeros((len(X), self.n_classes))
        proba[:, self.estimator_.classes_] = self.estimator_.predict_proba(X)  # classes absent in train stay 0
        return proba

    def save(self, directory: Path) -> None:
        import joblib

        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, directory / "adapter.joblib")

    @classmethod
    def load(cls, directory: Path) -> "SklearnAdapter":
        import joblib

        return joblib.load(directory / "adapter.joblib")


for _name, (_reg, _clf, _defaults, _tags, _desc) in SKLEARN_MODELS.items():
    register_adapter(_name, framework="sklearn", tags=_tags, description=_desc, defaults=_defaults)(
        functools.partial(SklearnAdapter, estimators=(_reg, _clf)))
