"""What every PyTorch image classifier shares: images in, probabilities out, through the one loop.

A subclass builds the network and its train/eval transforms (timm's own data config); training is
``torch_training.fit_module`` over batches the transforms draw, so the recipe's optimizer,
scheduler, early stopping, checkpoint and ``init_from`` apply to images as they do to tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .params import ImageSettings
from .registry import TRAIN_OPTIONS, Adapter


class ImageParams(ImageSettings):
    """Settings from the recipe's image section, plus the model's own."""
    scale: tuple[float, float] = (0.6, 1.0)
    auto_augment: str | None = None
    drop_rate: float = 0.0


class ImageClassifier(Adapter):
    array_inputs = False
    Params = ImageParams
    # k logits and cross-entropy: the binary-only BCE options do not apply; one network per bundle.
    train_options = frozenset(TRAIN_OPTIONS) - {"pos_weight", "loss", "soft_f1_alpha", "ensemble"}
    fitted_config = ("input_size",)

    # --- what a subclass provides ------------------------------------------------------------
    def build_net(self, weights: bool = True):
        """The network, with ``self.n_classes`` outputs; sets ``self.input_size_`` (pixels). With
        ``weights`` false, no pretrained weights are fetched (loading a bundle brings its own)."""
        raise NotImplementedError

    def transforms(self, training: bool):
        """PIL image → float tensor [3, S, S], normalised as the model expects."""
        raise NotImplementedError

    # --- fit / predict through the shared loop -------------------------------------------------
    def _batches(self, images, y, training: bool):
        from PIL import Image

        from .batches import TransformedBatches

        cache = self.__dict__.setdefault("_transforms", {})  # built once per mode, not per request
        if training not in cache:
            cache[training] = self.transforms(training)
        tf = cache[training]
        return TransformedBatches(images, y, lambda image: tf(Image.fromarray(image)))

    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        from .torch_training import fit_module, load_initial_weights, seed_everything

        seed_everything(spec.seed, spec.deterministic)
        self.net_ = self.build_net()
        if spec.init_from:
            load_initial_weights(self.net_, spec.init_from)
        self.history_ = fit_module(self.net_, self._batches(X, y, True), None, self._batches(X_val, y_val, False), None,
                                   "classification", spec, callback)

    def _predict(self, X) -> np.ndarray:
        from .torch_training import predict_module, to_scores

        return to_scores(predict_module(self.net_, self._batches(X, np.zeros(len(X), int), False), 64),
                         "classification")

    # --- weights ---------------------------------------------------------------------------
    def _save_weights(self, directory: Path) -> None:
        from .torch_training import save_state

        save_state(self.net_, directory / "model.pt")

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        from .torch_training import load_state

        self.net_ = load_state(self.build_net(weights=False), directory / "model.pt")
