"""scikit-learn estimators behind the adapter interface. Each catalog entry is one table row."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecipeError
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
    """One estimator pair per catalog entry (``estimators``: regressor, classifier). It fits in one
    call, so no train option applies; the estimator's own params (``max_iter``, ``early_stopping``) do."""

    estimators: tuple[str, str]

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

    @property
    def categorical_encoding(self) -> str:
        """HistGradientBoosting splits on categories itself (``categorical_features``): it takes ordinal
        codes, which come last; the other estimators take one-hot columns."""
        return "ordinal" if "HistGradientBoosting" in self.estimators[0] else "onehot"

    def _fit(self, X, y, X_val, y_val, spec, callback, cat_cardinalities=()) -> None:
        est = self._make().set_params(**self.params)
        if cat_cardinalities and "categorical_features" not in self.params:
            # codes 1..k (0: unknown at serving); more than max_bins codes stay numeric codes
            cards = [int(c) <= est.max_bins for c in cat_cardinalities]
            est.set_params(categorical_features=[False] * (X.shape[1] - len(cards)) + cards)
        self.estimator_ = est.fit(X, y)
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

    def _save_weights(self, directory: Path) -> None:
        import joblib

        joblib.dump(self.estimator_, directory / "estimator.joblib")

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        import joblib

        self.estimator_ = joblib.load(directory / "estimator.joblib")

    @classmethod
    def load(cls, directory: Path) -> "SklearnAdapter":
        if (Path(directory) / "adapter.joblib").is_file():  # bundles from before: the whole adapter pickled
            import joblib

            return joblib.load(Path(directory) / "adapter.joblib")
        return super().load(directory)


for _name, (_reg, _clf, _defaults, _tags, _desc) in SKLEARN_MODELS.items():
    _cls = type(f"Sklearn_{_name}", (SklearnAdapter,), {"estimators": (_reg, _clf), "__module__": __name__})
    globals()[_cls.__name__] = _cls  # importable by name, as a pickled instance needs
    register_adapter(_name, framework="sklearn", tags=_tags, description=_desc, defaults=_defaults)(_cls)
