"""The training loop every PyTorch adapter shares.

Batches are slices of a shuffled index into tensors that already sit on the device: no
``DataLoader(TensorDataset)`` and no per-sample indexing, which is what makes tabular
training fast on CPU as well as GPU.
"""
from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _optimizer(params, spec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.learning_rate, momentum=0.9, weight_decay=spec.weight_decay)
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)


def fit_module(net: nn.Module, X, y, X_val, y_val, task: str, spec, callback) -> list[dict[str, float]]:
    """Train ``net``; early stopping on validation loss restores the best weights. Returns the history."""
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed)
    device = resolve_device(spec.device)
    net.to(device)
    regression = task == "regression"
    to_y = (lambda a: torch.as_tensor(a, dtype=torch.float32).view(-1, 1)) if regression else \
        (lambda a: torch.as_tensor(a, dtype=torch.long))
    Xt, yt = torch.as_tensor(X).to(device), to_y(y).to(device)
    Xv, yv = torch.as_tensor(X_val).to(device), to_y(y_val).to(device)
    loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    opt = _optimizer(net.parameters(), spec)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(2, spec.early_stopping_patience // 3))
             if spec.scheduler == "plateau" else None)
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    n, bs = len(Xt), spec.batch_size
    best_loss, best_state, best_epoch, history = float("inf"), None, 0, []
    log.info("training on %s: %d rows, %d features, %d epochs, batch %d", device, n, Xt.shape[1], spec.epochs, bs)

    for epoch in range(1, spec.epochs + 1):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            if len(idx) == 1 and n > 1 and any(isinstance(m, nn.BatchNorm1d) for m in net.modules()):
                continue  # BatchNorm cannot normalise a batch of one
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        val_loss = _evaluate_loss(net, Xv, yv, loss_fn, bs)
        if sched is not None:
            sched.step(val_loss)
        state = {"epoch": epoch, "train_loss": total / n, "val_loss": val_loss,
                 "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
        history.append(state)
        callback(state)
        if val_loss < best_loss - 1e-7:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(net.state_dict())
        elif epoch - best_epoch >= spec.early_stopping_patience:
            log.info("early stopping at epoch %d; best epoch %d (val_loss %.5f)", epoch, best_epoch, best_loss)
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.to("cpu").eval()
    return history


@torch.no_grad()
def _evaluate_loss(net, X, y, loss_fn, bs) -> float:
    net.eval()
    total = sum(loss_fn(net(X[i:i + bs]), y[i:i + bs]).item() * len(X[i:i + bs]) for i in range(0, len(X), bs))
    return total / max(len(X), 1)


@torch.no_grad()
def predict_module(net: nn.Module, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    net.eval()
    Xt = torch.as_tensor(X, dtype=torch.float32)
    return torch.cat([net(Xt[i:i + batch_size]) for i in range(0, len(Xt), batch_size)]).numpy()
