"""Base for PyTorch adapters: one fit / predict / save / load for every network family.

A subclass names its ``Params`` model and implements ``build_net(input_shape, n_out)``;
torch is imported only inside methods, so registering a model costs nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .registry import TRAIN_OPTIONS, Adapter


class TorchAdapter(Adapter):
    train_options = frozenset(TRAIN_OPTIONS)  # torch_training.fit_module honours every train option
    fitted_config = ("input_shape", "n_out")
    lazy_windows = True  # torch_training gathers each batch from the windows' series

    def build_net(self, input_shape: tuple[int, ...], n_out: int):
        raise NotImplementedError

    def _n_out(self) -> int:
        # Binary classification uses one logit (BCE), so pos_weight and soft-F1 apply.
        return 1 if self.task == "regression" or self.n_classes == 2 else int(self.n_classes)

    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        from .torch_training import fit_module, load_initial_weights, seed_everything

        seed_everything(spec.seed, spec.deterministic)
        self.input_shape_, self.n_out_ = tuple(X.shape[1:]), self._n_out()
        self.net_ = self.build_net(self.input_shape_, self.n_out_)
        if spec.init_from:
            load_initial_weights(self.net_, spec.init_from)
        self.history_ = fit_module(self.net_, X, y, X_val, y_val, self.task, spec, callback)

    def _predict(self, X) -> np.ndarray:
        from .torch_training import predict_module, to_scores

        return to_scores(predict_module(self.net_, X), self.task)

    def _save_weights(self, directory: Path) -> None:
        from .torch_training import save_state

        save_state(self.net_, directory / "model.pt")

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        from .torch_training import load_state

        # Bundles from before input_shape/n_out were recorded: a flat MLP input, one output per class.
        self.input_shape_ = tuple(config.get("input_shape") or [config["n_features"]])
        self.n_out_ = config.get("n_out") or (1 if config["task"] == "regression" else int(config["n_classes"]))
        self.net_ = load_state(self.build_net(self.input_shape_, self.n_out_), directory / "model.pt")
