"""Base for PyTorch adapters: one fit / predict / save / load for every network family.

A subclass names its ``Params`` model and implements ``build_net(input_shape, n_out)``;
torch is imported only inside methods, so registering a model costs nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .params import Params, validate_params  # noqa: F401  (Params: the type subclasses set)
from .registry import Adapter


class TorchAdapter(Adapter):
    Params: type[Params]

    def __init__(self, task: str, n_classes: int | None = None, **params):
        self.task, self.n_classes, self.params = task, n_classes, params

    def check_params(self) -> None:
        validate_params(self.Params, self.catalog_name or type(self).__name__, self.params)

    def build_net(self, input_shape: tuple[int, ...], n_out: int):
        raise NotImplementedError

    def _n_out(self) -> int:
        # Binary classification uses one logit (BCE), so pos_weight and soft-F1 apply.
        return 1 if self.task == "regression" or self.n_classes == 2 else int(self.n_classes)

    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        from .torch_training import fit_module, load_initial_weights, seed_everything

        seed_everything(spec.seed, spec.deterministic)
        self.input_shape_ = tuple(X.shape[1:])
        self.net_ = self.build_net(self.input_shape_, self._n_out())
        if spec.init_from:
            load_initial_weights(self.net_, spec.init_from)
        self.history_ = fit_module(self.net_, X, y, X_val, y_val, self.task, spec, callback)

    def _predict(self, X) -> np.ndarray:
        from .torch_training import predict_module, to_scores

        return to_scores(predict_module(self.net_, X), self.task)

    def save(self, directory: Path) -> None:
        import torch

        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net_.state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(json.dumps(
            {"task": self.task, "n_classes": self.n_classes, "input_shape": list(self.input_shape_),
             "n_out": self._n_out(), "params": self.params}))

    @classmethod
    def load(cls, directory: Path) -> "TorchAdapter":
        import torch

        cfg = json.loads((Path(directory) / "config.json").read_text())
        self = cls(cfg["task"], cfg["n_classes"], **cfg["params"])
        # Bundles from before input_shape/n_out were recorded: a flat MLP input, one output per class.
        self.input_shape_ = tuple(cfg.get("input_shape") or [cfg["n_features"]])
        n_out = cfg.get("n_out") or (1 if cfg["task"] == "regression" else int(cfg["n_classes"]))
        self.net_ = self.build_net(self.input_shape_, n_out)
        self.net_.load_state_dict(torch.load(Path(directory) / "model.pt", map_location="cpu", weights_only=True))
        self.net_.eval()
        self.fitted_ = True
        return self
