"""Base for PyTorch adapters: one fit / predict / save / load for every network family.

A subclass names its ``Params`` model and implements ``build_net(input_shape, n_out)``;
torch is imported only inside methods, so registering a model costs nothing.

``train.ensemble: N`` trains N networks from seeds ``seed .. seed+N-1`` (each with its own early
stopping) and averages their predictions, probabilities for classification: the deep ensembles of
Gorishniy et al. (2021). The N networks are saved as one ``nn.ModuleList`` in model.pt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .registry import TRAIN_OPTIONS, Adapter


class TorchAdapter(Adapter):
    train_options = frozenset(TRAIN_OPTIONS)  # torch_training.fit_module honours every train option
    fitted_config = ("input_shape", "n_out", "members")
    lazy_windows = True  # torch_training gathers each batch from the windows' series

    def build_net(self, input_shape: tuple[int, ...], n_out: int):
        raise NotImplementedError

    def _n_out(self) -> int:
        # Binary classification uses one logit (BCE), so pos_weight and soft-F1 apply.
        return 1 if self.task == "regression" or self.n_classes == 2 else int(self.n_classes)

    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        from torch import nn

        from .torch_training import fit_module, load_initial_weights, read_initial_weights, seed_everything

        self.input_shape_, self.n_out_, self.members_ = tuple(X.shape[1:]), self._n_out(), spec.ensemble
        # Read once: every member starts from the same version even if an alias moves while they train.
        initial = read_initial_weights(spec.init_from) if spec.init_from else None
        nets, self.history_ = [], []
        for k in range(self.members_):
            member = _member_spec(spec, k)
            seed_everything(member.seed, member.deterministic)
            net = self.build_net(self.input_shape_, self.n_out_)
            if spec.init_from:
                load_initial_weights(net, spec.init_from, k, self.members_, initial)
            tag = {"member": k + 1} if self.members_ > 1 else {}  # whose epoch: logs, learning curve, MLflow
            history = fit_module(net, X, y, X_val, y_val, self.task, member,
                                 lambda state, tag=tag: callback({**tag, **state}))
            self.history_ += [{**tag, **h} for h in history]
            nets.append(net)
        self.net_ = nets[0] if len(nets) == 1 else nn.ModuleList(nets)

    def _networks(self):
        return self.net_ if self.members_ > 1 else [self.net_]

    def _predict(self, X) -> np.ndarray:
        from .torch_training import predict_module, to_scores

        scores = [to_scores(predict_module(net, X), self.task) for net in self._networks()]
        return scores[0] if len(scores) == 1 else np.mean(scores, axis=0)

    def _save_weights(self, directory: Path) -> None:
        from .torch_training import save_state

        save_state(self.net_, directory / "model.pt")

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        from torch import nn

        from .torch_training import load_state

        # Bundles from before input_shape/n_out were recorded: a flat MLP input, one output per class.
        self.input_shape_ = tuple(config.get("input_shape") or [config["n_features"]])
        self.n_out_ = config.get("n_out") or (1 if config["task"] == "regression" else int(config["n_classes"]))
        self.members_ = config.get("members") or 1  # bundles from before ensembles: one network
        nets = [self.build_net(self.input_shape_, self.n_out_) for _ in range(self.members_)]
        self.net_ = load_state(nets[0] if self.members_ == 1 else nn.ModuleList(nets), directory / "model.pt")


def _member_spec(spec, k: int):
    """Member ``k``'s train options: its own seed and, with a checkpoint path, its own checkpoint file."""
    if spec.ensemble == 1:
        return spec
    update: dict[str, Any] = {"seed": spec.seed + k}
    if spec.checkpoint_path:
        path = Path(spec.checkpoint_path)
        update["checkpoint_path"] = str(path.with_name(f"{path.stem}.member{k + 1}{path.suffix}"))
    return spec.model_copy(update=update)
