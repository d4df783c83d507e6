"""Batch sources for the one training loop (``torch_training.fit_module``).

A source holds samples and targets and yields ``(x, y)`` tensor batches on the device: arrays
(tables, windows) sit on the device once and an epoch is one gather; other samples (images, with
a random augmentation drawn afresh each epoch) go through a transform as each batch is drawn.
Torch is imported inside methods, so adapters may import this module at registration.
"""
from __future__ import annotations

import numpy as np


def targets_tensor(y, task: str, n_out: int):
    """Regression and one-logit binary targets as float [n, 1]; class indices otherwise."""
    import torch

    if task == "regression" or n_out == 1:
        return torch.as_tensor(y, dtype=torch.float32).view(-1, 1)
    return torch.as_tensor(y, dtype=torch.long)


class BatchSource:
    def __init__(self, samples, y):
        self.samples, self.y = samples, y

    def __len__(self) -> int:
        return len(self.samples)

    def prepare(self, device, task: str, n_out: int) -> None:
        """Targets (and, for arrays, samples) as tensors on ``device``; called once before training."""
        raise NotImplementedError

    def probe(self, device):
        """Two samples as a batch on ``device``: what the loop feeds the network to learn its output width."""
        raise NotImplementedError

    def batches(self, batch_size: int, order=None):
        """``(x, y)`` batches in ``order`` (a permutation tensor), or in sample order when None."""
        raise NotImplementedError


class TensorBatches(BatchSource):
    """Arrays in memory (tables, windows): moved to the device once (no copy when already there); an
    epoch is one gather of a shuffled index, then its batches are contiguous views. No per-sample indexing."""

    def prepare(self, device, task: str, n_out: int) -> None:
        import torch

        self.Xt = torch.as_tensor(self.samples).to(device)
        self.yt = targets_tensor(self.y, task, n_out).to(device)

    def probe(self, device):
        import torch

        return torch.as_tensor(self.samples[:2]).to(device)

    def batches(self, batch_size: int, order=None):
        X, y = self.Xt, self.yt
        if order is not None:  # one gather per epoch; batches are then contiguous views
            order = order.to(X.device)
            X, y = X[order], y[order]
        for i in range(0, len(X), batch_size):
            yield X[i:i + batch_size], y[i:i + batch_size]


class TransformedBatches(BatchSource):
    """Samples a transform turns into tensors one by one as each batch is drawn (images: decode,
    augment, normalise). Map-style too (``source[i]`` is one transformed sample and its target),
    which is what a Hugging Face Trainer reads."""

    def __init__(self, samples, y, transform):
        super().__init__(samples, y)
        self.transform = transform

    def __getitem__(self, i: int):
        return self.transform(self.samples[i]), self.y[i]

    def prepare(self, device, task: str, n_out: int) -> None:
        self.device, self.yt = device, targets_tensor(np.asarray(self.y), task, n_out)

    def _stack(self, idx):
        import torch

        return torch.stack([self.transform(self.samples[i]) for i in idx])

    def probe(self, device):
        return self._stack(range(min(2, len(self.samples)))).to(device)

    def batches(self, batch_size: int, order=None):
        import torch

        order = torch.arange(len(self.samples)) if order is None else order
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size].tolist()
            yield self._stack(idx).to(self.device), self.yt[idx].to(self.device)
