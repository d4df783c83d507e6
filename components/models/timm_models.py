"""timm image classifiers: any name ``timm.list_models()`` knows, through one adapter.

The entries below are the ones we recommend and describe; ``timm:<name>`` in a recipe reaches
every other timm model too (the catalog makes its entry on first use). Input size and
normalisation come from the model's pretrained config (``resolve_data_config``), transforms from
timm's ``create_transform``.
"""
from __future__ import annotations

from .registry import register_adapter, register_namespace
from .vision import ImageClassifier, ImageParams


class TimmParams(ImageParams):
    arch: str


class TimmClassifier(ImageClassifier):
    """A timm model with a fresh classifier head for the recipe's classes."""
    Params = TimmParams

    def check_params(self) -> None:
        import timm

        super().check_params()
        if not timm.is_model(self.params["arch"]):
            import difflib

            from ..errors import RecipeError

            close = difflib.get_close_matches(self.params["arch"], timm.list_models(), n=3)
            raise RecipeError(f"model.name: timm does not know {self.params['arch']!r}; close names: {close}")

    def build_net(self, weights: bool = True):
        import timm
        from timm.data import resolve_data_config

        p = self.params
        net = timm.create_model(p["arch"], pretrained=weights and p.get("pretrained", False),
                                num_classes=self.n_classes, drop_rate=p.get("drop_rate", 0.0))
        size = p.get("size")
        # The pretrained config gives mean/std and the native size; the recipe may choose another size.
        self.data_config_ = resolve_data_config({"input_size": (3, size, size), "crop_pct": 1.0} if size else {},
                                                model=net)
        self.input_size_ = int(self.data_config_["input_size"][-1])
        return net

    def transforms(self, training: bool):
        from timm.data import create_transform

        if not training:
            return create_transform(**self.data_config_, is_training=False)
        p = self.params
        return create_transform(**self.data_config_, is_training=True, hflip=p.get("hflip", 0.5),
                                scale=tuple(p.get("scale", (0.6, 1.0))), auto_augment=p.get("auto_augment"))


def register_timm(arch: str, **card) -> None:
    register_adapter(f"timm:{arch}", framework="timm", tasks=("classification",), family="image",
                     description=card.pop("description", f"timm {arch}"), defaults={"arch": arch},
                     **card)(TimmClassifier)


# arch, params (M), native input size, batch, lr, tags: from the timm model cards.
for _arch, _m, _size, _batch, _lr, _tags in [
    ("resnet18", 11.7, 224, 128, 1e-3, ("cnn", "fast", "baseline")),
    ("resnet50", 25.6, 224, 64, 1e-3, ("cnn", "accurate")),
    ("resnet10t", 5.4, 176, 256, 2e-3, ("cnn", "fast", "small")),
    ("efficientnet_b0", 5.3, 224, 128, 1e-3, ("cnn", "efficient")),
    ("mobilenetv3_small_100", 2.5, 224, 256, 2e-3, ("cnn", "fast", "small", "mobile")),
    ("mobilenetv3_large_100", 5.5, 224, 128, 1e-3, ("cnn", "mobile")),
    ("convnext_atto", 3.7, 224, 128, 1e-3, ("cnn", "fast", "small")),
    ("convnext_tiny", 28.6, 224, 64, 5e-4, ("cnn", "accurate")),
    ("regnety_002", 3.2, 224, 256, 2e-3, ("cnn", "fast", "small")),
    ("vit_tiny_patch16_224", 5.7, 224, 128, 5e-4, ("transformer", "small")),
    ("vit_small_patch16_224", 22.1, 224, 64, 5e-4, ("transformer",)),
    ("deit_tiny_patch16_224", 5.7, 224, 128, 5e-4, ("transformer", "small")),
]:
    register_timm(_arch, params_m=_m, input_size=_size, batch_size=_batch, learning_rate=_lr, tags=_tags)


# Any other timm name works too: its entry is made on first use.
register_namespace("timm:", lambda arch: register_timm(arch, description=f"timm {arch} (not described in this catalog)"))
