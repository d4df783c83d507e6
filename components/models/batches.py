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


class Windows:
    """Sliding windows [N, C, L] over a [T, C] series, kept lazy: the series once and each window's
    start row. Indexing with an int, a slice or an index array gathers just those windows
    ([C, L] or [b, C, L], a copy of b*C*L values), so a training epoch gathers batch by batch and
    never holds all N*C*L values. ``np.asarray(windows)`` materialises them (for code that needs one
    array). Time series with several series put them one after another in ``values``, with starts
    only where a whole window fits inside one series; one series passes ``starts=None`` and a count
    ``n`` instead (window i starts at row i, and no start array is held)."""

    ndim = 3

    def __init__(self, values: np.ndarray, starts: np.ndarray | None, context_len: int, n: int | None = None):
        from numpy.lib.stride_tricks import sliding_window_view

        # Channel by channel in memory (Fortran order; no copy when it already is): a gathered batch is then
        # C-contiguous [b, C, L], which convolutions and LSTMs read without a copy of their own.
        values = np.asfortranarray(values)
        self.values, self.context_len = values, context_len
        self.starts = None if starts is None else np.asarray(starts)
        self._view = sliding_window_view(values, context_len, axis=0)  # [T - L + 1, C, L], zero-copy
        if starts is None:
            self._view = self._view[:n]

    def __len__(self) -> int:
        return len(self._view) if self.starts is None else len(self.starts)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), self.values.shape[1], self.context_len)

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def nbytes(self) -> int:
        """What this object holds (the series and the starts), not N*C*L values."""
        return self.values.nbytes + (0 if self.starts is None else self.starts.nbytes)

    def __getitem__(self, index) -> np.ndarray:
        out = self._view[index if self.starts is None else self.starts[index]]
        return out if out.flags.writeable else np.array(out)  # a gather copies; a view of the series is copied

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or self.values.dtype, copy=False)


class WindowBatches(BatchSource):
    """Windows (``Windows``) gathered batch by batch from the series: shuffling permutes indices, not
    data. On the CPU a batch is one numpy gather from the zero-copy view; on an accelerator the series
    and starts go to the device once and a batch is one gather there."""

    _view_t = None  # the series' windows as a tensor view on an accelerator

    def prepare(self, device, task: str, n_out: int) -> None:
        self.device = device
        self.yt = targets_tensor(self.y, task, n_out).to(device)
        if device.type != "cpu":
            self.series_to(device)

    def series_to(self, device) -> None:
        """Gather on ``device`` from here on: the series and starts move there once (an accelerator; on
        the CPU torch's gather from a strided view is far slower than numpy's, so it is not used there)."""
        import torch

        w = self.samples
        self._view_t = torch.as_tensor(w.values).to(device).unfold(0, w.context_len, 1)  # [T - L + 1, C, L]
        self._starts_t = None if w.starts is None else torch.as_tensor(w.starts).to(device)

    def probe(self, device):
        import torch

        return torch.from_numpy(self.samples[np.arange(min(2, len(self.samples)))]).to(device)

    def gather(self, idx):
        """Windows at ``idx`` (a tensor of positions) as one [b, C, L] tensor on the device."""
        import torch

        if self._view_t is not None:
            idx = idx.to(self._view_t.device)
            return self._view_t[idx if self._starts_t is None else self._starts_t[idx].long()]
        return torch.from_numpy(self.samples[idx.numpy()])

    def batches(self, batch_size: int, order=None):
        import torch

        order = torch.arange(len(self.samples)) if order is None else order.cpu()
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            yield self.gather(idx), self.yt[idx.to(self.yt.device)]


def batch_source(X, y) -> BatchSource:
    """The source the training loop reads: ``X`` itself when it is one, lazy windows batch by batch,
    arrays on the device once."""
    if isinstance(X, BatchSource):
        return X
    return WindowBatches(X, y) if isinstance(X, Windows) else TensorBatches(X, y)
