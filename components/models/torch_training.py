"""The training loop every PyTorch adapter shares.

Batches are slices of a shuffled index into tensors that already sit on the device: no
``DataLoader(TensorDataset)`` and no per-sample indexing, which is what makes tabular
training fast on CPU as well as GPU (see tests/benchmarks/bench_tabular_training.py). Time-series
windows stay lazy: each batch is gathered from the series' sliding-window view (``batches.WindowBatches``;
tests/benchmarks/bench_ts_train.py).
"""
from __future__ import annotations

import copy
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .batches import TransformedBatches, Windows, batch_source

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _optimizer(params, spec) -> torch.optim.Optimizer:
    """Fused kernels (one update for all parameters, CPU and CUDA) where torch has them; else foreach
    (one multi-tensor update per step instead of a Python loop over parameters)."""
    params = list(params)
    if spec.optimizer == "sgd":
        cls, options = torch.optim.SGD, {"momentum": 0.9}
    else:
        cls, options = (torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam), {}
    try:
        return cls(params, lr=spec.learning_rate, weight_decay=spec.weight_decay, fused=True, **options)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device or dtype
        return cls(params, lr=spec.learning_rate, weight_decay=spec.weight_decay, foreach=True, **options)


def make_schedulers(opt: torch.optim.Optimizer, spec, steps_per_epoch: int):
    """The learning-rate schedule of ``spec``: (stepped after every batch, stepped on the validation loss after
    every epoch), either None. ``warmup_epochs`` raises the rate linearly from 1/100 of ``learning_rate`` over
    its batches; then ``cosine`` decays it to 0 by the last batch of ``epochs`` (SGDR without restarts,
    Loshchilov & Hutter 2017), ``plateau`` halves it when the validation loss stalls, ``none`` keeps it."""
    lr_scheduler = torch.optim.lr_scheduler
    warmup = spec.warmup_epochs * steps_per_epoch
    after = []
    if spec.scheduler == "cosine":
        after = [lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, (spec.epochs - spec.warmup_epochs) * steps_per_epoch),
                                                eta_min=0.0)]
    if warmup:
        ramp = lr_scheduler.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warmup)
        batch_sched = lr_scheduler.SequentialLR(opt, [ramp, *after], milestones=[warmup]) if after else ramp
    else:
        batch_sched = after[0] if after else None
    plateau = (lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(2, spec.early_stopping_patience // 3))
               if spec.scheduler == "plateau" else None)
    return batch_sched, plateau


def soft_f1_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - F1 computed on probabilities, differentiable; pulls the decision towards F1."""
    p = torch.sigmoid(logits)
    tp = (p * target).sum()
    return 1 - 2 * tp / (p.sum() + target.sum() + 1e-8)


def make_loss(task: str, n_out: int, y: np.ndarray, spec, device) -> nn.Module | callable:
    if task == "regression":
        return nn.MSELoss()
    if n_out > 1:
        return nn.CrossEntropyLoss()
    weight = None
    if spec.pos_weight == "global":
        positives = float(np.sum(y == 1))
        weight = (len(y) - positives) / max(positives, 1.0)
    elif spec.pos_weight is not None:
        weight = float(spec.pos_weight)
    bce = nn.BCEWithLogitsLoss(pos_weight=None if weight is None else torch.tensor([weight], device=device))
    if weight is not None:
        log.info("binary loss with pos_weight %.4g", weight)
    if spec.loss != "bce_soft_f1":
        return bce
    alpha = spec.soft_f1_alpha
    return lambda logits, target: alpha * bce(logits, target) + (1 - alpha) * soft_f1_loss(logits, target)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Call before building the network, so initial weights are seeded too."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    if deterministic or torch.are_deterministic_algorithms_enabled():  # the call imports torch._dynamo: ~1.5 s
        torch.use_deterministic_algorithms(deterministic, warn_only=True)


def fit_module(net: nn.Module, X, y, X_val, y_val, task: str, spec, callback) -> list[dict[str, float]]:
    """Train ``net`` on arrays ``X``/``X_val``, lazy ``Windows`` (gathered batch by batch) or batch sources
    (``TensorBatches``, ``TransformedBatches``; then ``y``/``y_val`` are unused). Early stopping on
    validation loss restores the best weights. Returns the history."""
    train, val = batch_source(X, y), batch_source(X_val, y_val)
    device = resolve_device(spec.device)
    net.to(device)
    with torch.no_grad():
        n_out = net.eval()(train.probe(device)).shape[-1]
    train.prepare(device, task, n_out)
    val.prepare(device, task, n_out)
    loss_fn = make_loss(task, n_out, np.asarray(train.y), spec, device)
    opt = _optimizer(net.parameters(), spec)
    n, bs = len(train), spec.batch_size
    batch_sched, sched = make_schedulers(opt, spec, steps_per_epoch=-(-n // bs))
    use_amp = spec.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    forward = torch.compile(net, mode=None if spec.compile == "default" else spec.compile) \
        if spec.compile != "off" else net
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    order_type = torch.int32 if n < 2**31 else torch.int64  # the epoch's shuffle: same order, half the bytes
    best_loss, best_state, best_epoch, history = float("inf"), None, 0, []
    log.info("training on %s%s: %d samples, %d epochs, batch %d", device, " (AMP)" if use_amp else "",
             n, spec.epochs, bs)

    for epoch in range(1, spec.epochs + 1):
        start = time.perf_counter()
        net.train()
        total = torch.zeros((), device=device)
        for xb, yb in train.batches(bs, torch.randperm(n, generator=gen, dtype=order_type)):
            if has_bn and len(xb) == 1:
                continue  # BatchNorm cannot normalise a batch of one
            opt.zero_grad(set_to_none=True)
            if use_amp:
                with torch.autocast(device_type=device.type, dtype=torch.float16):
                    loss = loss_fn(forward(xb), yb)
                scaler.scale(loss).backward()
                if spec.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(net.parameters(), spec.grad_clip)
                scaler.step(opt)
                scaler.update()
            else:  # the plain step: no autocast context or scaler calls on every batch
                loss = loss_fn(forward(xb), yb)
                loss.backward()
                if spec.grad_clip:
                    nn.utils.clip_grad_norm_(net.parameters(), spec.grad_clip)
                opt.step()
            if batch_sched is not None:
                batch_sched.step()
            total += loss.detach() * len(xb)  # stays on the device: no sync per batch
        val_loss = _evaluate_loss(forward, val, loss_fn, bs, use_amp, device)
        if sched is not None and epoch > spec.warmup_epochs:
            sched.step(val_loss)
        state = {"epoch": epoch, "train_loss": float(total) / n, "val_loss": val_loss,
                 "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
        history.append(state)
        callback(state)
        if val_loss < best_loss - 1e-7:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(net.state_dict())
            if spec.checkpoint_path:
                _save_checkpoint(best_state, epoch, val_loss, spec.checkpoint_path)
        elif epoch - best_epoch >= spec.early_stopping_patience:
            log.info("early stopping at epoch %d; best epoch %d (val_loss %.5f)", epoch, best_epoch, best_loss)
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.to("cpu").eval()
    return history


def _save_checkpoint(state: dict, epoch: int, val_loss: float, path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    torch.save({"state_dict": state, "epoch": epoch, "val_loss": val_loss}, tmp)
    tmp.replace(target)


@torch.no_grad()
def _evaluate_loss(net, val, loss_fn, bs, use_amp, device) -> float:
    net.eval()
    total = 0.0
    for xb, yb in val.batches(bs):
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            total += float(loss_fn(net(xb), yb)) * len(xb)
    return total / max(len(val), 1)


@torch.no_grad()
def predict_module(net: nn.Module, X, batch_size: int = 8192) -> np.ndarray:
    """Network outputs on the CPU for an array, lazy ``Windows`` (gathered batch by batch) or a
    ``TransformedBatches`` source."""
    if net.training:  # eval() walks every submodule: a tenth of a one-row request's model call
        net.eval()
    if isinstance(X, Windows):
        return torch.cat([net(torch.from_numpy(X[i:i + batch_size]))
                          for i in range(0, len(X), batch_size)]).float().numpy()
    if isinstance(X, TransformedBatches):
        X.prepare(torch.device("cpu"), "classification", 2)
        return torch.cat([net(xb) for xb, _ in X.batches(batch_size)]).float().numpy()
    Xt = torch.as_tensor(X, dtype=torch.float32)
    return torch.cat([net(Xt[i:i + batch_size]) for i in range(0, len(Xt), batch_size)]).float().numpy()


def to_scores(out: np.ndarray, task: str) -> np.ndarray:
    """Network outputs → regression values [n] or class probabilities [n, k]."""
    if task == "regression":
        return out[:, 0]
    if out.shape[1] == 1:
        p = 1 / (1 + np.exp(-out[:, 0]))
        return np.stack([1 - p, p], axis=1)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def load_initial_weights(net: nn.Module, source: str, member: int = 0, members: int = 1, weights=None) -> None:
    """Fine-tuning: start from a registered version (models:/…), a bundle directory or a .pt file. Weights
    of one network start every member of an ensemble; an ensemble's weights (``train.ensemble``) start
    the same number of members, member ``member`` from its own. ``weights``: what ``read_initial_weights``
    gave, so the members of an ensemble start from one read of the source."""
    state, path = weights or read_initial_weights(source)
    state = _member_weights(state, set(net.state_dict()), path, member, members)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"train.init_from: weights in {path} do not fit this network "
                         f"(same model and params needed): {str(exc).splitlines()[0]}") from None
    log.info("initialised weights from %s", source)


def read_initial_weights(source: str) -> tuple[dict, str]:
    """The state dict ``train.init_from`` names, and where it came from (for messages): the file, or the
    registered version, whose download is removed once read."""
    from ..model_source import check_model_source, fetch_registered

    if source.startswith("models:/"):  # checked against the registered digest before torch.load
        check_model_source(source, "train.init_from")
        with tempfile.TemporaryDirectory(prefix="init-from-") as tmp:
            return _read_weights(source, fetch_registered(source, "train.init_from", tmp)[0])[0], source
    return _read_weights(source, Path(check_model_source(source, "train.init_from")))


def _read_weights(source: str, path: Path) -> tuple[dict, str]:
    if path.is_dir():  # a bundle (or its model directory): the weights file the torch adapters write
        found = sorted(path.rglob("model.pt"), key=lambda p: len(p.parts))
        path = found[0] if found else path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: no weights at {source!r}; expected models:/name@alias, "
                                "a bundle directory or a .pt file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state), str(path)


def _member_weights(state: dict, own: set[str], path: str, member: int, members: int) -> dict:
    """An ensemble's model.pt (an ``nn.ModuleList``: member k's weights under ``k.``) gives member
    ``member``'s; any other state is returned as it is, for load_state_dict to check."""
    groups: dict[str, dict] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        groups.setdefault(head, {})[rest] = value
    if set(state) == own or not all(h.isdigit() and set(g) == own for h, g in groups.items()):
        return state
    if len(groups) != members:
        raise ValueError(f"train.init_from: {path} holds an ensemble of {len(groups)} networks; fine-tuning it "
                         f"takes train.ensemble: {len(groups)} (one member from each), this recipe has {members}")
    return groups[str(member)]


def save_state(net: nn.Module, path: Path) -> None:
    torch.save(net.state_dict(), path)


def load_state(net: nn.Module, path: Path) -> nn.Module:
    """``net`` with the state dict saved at ``path``, on the CPU in eval mode (what load gives serving)."""
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()
