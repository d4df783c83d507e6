"""What every PyTorch image classifier shares: images in, a training loop, probabilities out.

A subclass builds the network and its train/eval transforms (timm's own data config, or a
Hugging Face model's normalisation); the loop, AMP on CUDA, best-epoch selection, progress
logging and save/load of the state dict live here once.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .params import Params, validate_params
from .registry import Adapter

log = logging.getLogger(__name__)


class ImageParams(Params):
    """Settings from the recipe's image section, plus the model's own."""
    size: int | None = None
    hflip: float = 0.5
    scale: tuple[float, float] = (0.6, 1.0)
    auto_augment: str | None = None
    pretrained: bool = False
    drop_rate: float = 0.0


class ImageClassifier(Adapter):
    array_inputs = False
    Params: type[Params] = ImageParams

    def __init__(self, task: str, n_classes: int | None = None, **params):
        self.task, self.n_classes, self.params = task, n_classes, params

    def check_params(self) -> None:
        validate_params(self.Params, self.catalog_name or type(self).__name__, self.params)

    # --- what a subclass provides ------------------------------------------------------------
    def build_net(self, weights: bool = True):
        """The network, with ``self.n_classes`` outputs; sets ``self.input_size_`` (pixels). With
        ``weights`` false, no pretrained weights are fetched (loading a bundle brings its own)."""
        raise NotImplementedError

    def transforms(self, training: bool):
        """PIL image → float tensor [3, S, S], normalised as the model expects."""
        raise NotImplementedError

    def logits(self, net, batch):
        return net(batch)

    # --- the shared loop -------------------------------------------------------------------
    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        import torch
        from torch import nn

        from .torch_training import resolve_device, seed_everything

        seed_everything(spec.seed, spec.deterministic)
        device = resolve_device(spec.device)
        self.net_ = self.build_net().to(device)
        optimizer = torch.optim.AdamW(self.net_.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs)
        use_amp = spec.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        loss_fn = nn.CrossEntropyLoss()
        train_tf, eval_tf = self.transforms(True), self.transforms(False)
        y, y_val = torch.as_tensor(np.asarray(y)), torch.as_tensor(np.asarray(y_val))
        best, best_state, self.history_ = np.inf, None, []
        generator = np.random.default_rng(spec.seed)
        for epoch in range(1, spec.epochs + 1):
            started, total = time.perf_counter(), 0.0
            self.net_.train()
            order = generator.permutation(len(X))
            batches = range(0, len(X), spec.batch_size)
            for n, start in enumerate(batches, 1):
                idx = order[start:start + spec.batch_size]
                xb = _stack(X, idx, train_tf).to(device)
                with torch.autocast(device.type, enabled=use_amp):
                    loss = loss_fn(self.logits(self.net_, xb), y[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if spec.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(self.net_.parameters(), spec.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach()) * len(idx)
                if n % 20 == 0:
                    log.info("epoch %d batch %d/%d loss %.4f", epoch, n, len(batches), float(loss))
            scheduler.step()
            proba = self._proba(X_val, eval_tf, device, spec.batch_size)
            val_loss = float(loss_fn(torch.log(torch.as_tensor(proba).clamp_min(1e-12)), y_val))
            state = {"epoch": epoch, "train_loss": total / len(X), "val_loss": val_loss,
                     "val_accuracy": float((proba.argmax(1) == y_val.numpy()).mean()),
                     "seconds": time.perf_counter() - started}
            self.history_.append(state)
            callback(state)
            if val_loss < best:
                best, best_state = val_loss, {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
        self.net_.load_state_dict(best_state)
        self.net_.eval()

    def _proba(self, X, tf, device, batch_size: int = 64) -> np.ndarray:
        import torch

        self.net_.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                xb = _stack(X, range(start, min(start + batch_size, len(X))), tf).to(device)
                out.append(torch.softmax(self.logits(self.net_, xb).float(), dim=1).cpu().numpy())
        return np.concatenate(out)

    def _predict(self, X) -> np.ndarray:
        device = next(self.net_.parameters()).device
        return self._proba(X, self.transforms(False), device)

    # --- persistence -----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        import torch

        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net_.state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(json.dumps(
            {"task": self.task, "n_classes": self.n_classes, "params": self.params, "input_size": self.input_size_}))

    @classmethod
    def load(cls, directory: Path) -> "ImageClassifier":
        import torch

        cfg = json.loads((Path(directory) / "config.json").read_text())
        self = cls(cfg["task"], cfg["n_classes"], **cfg["params"])
        self.net_ = self.build_net(weights=False)
        self.net_.load_state_dict(torch.load(Path(directory) / "model.pt", map_location="cpu", weights_only=True))
        self.net_.eval()
        self.fitted_ = True
        return self


def _stack(images, idx, tf):
    import torch
    from PIL import Image

    return torch.stack([tf(Image.fromarray(images[i])) for i in idx])
