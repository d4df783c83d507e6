"""Ultralytics YOLO: detect, segment, pose, classify and OBB models by name, trained by
Ultralytics' own trainer with the recipe mapped onto its arguments, fully offline.

Models are built from their YAML (``yolo11n.yaml``: random weights) unless ``pretrained`` is on,
which loads ``<name>.pt`` (from the Ultralytics weights directory, or downloaded where network
is allowed). The trained ``best.pt`` is saved inside the bundle. The platform feeds detection,
segmentation, pose and OBB (YOLO/COCO data) and classification (ImageFolder) recipes.

Instance targets arrive per image as ``{"boxes" [m, 4] xyxy px, "classes", and "polygons" (segment:
[x1, y1, ...] px per instance), "keypoints" (pose: [x, y, v] * K px) or "corners" (obb: 4 points px)}``
and are written back as the YOLO label lines Ultralytics trains and validates from. Predictions add
``masks`` (polygons, px), ``keypoints`` ([K, 3]: x, y, confidence) or ``rotated_boxes`` (xywhr) and
``corners``. ``validate`` runs Ultralytics' own validator: box, mask and pose mAP.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecipeError
from .params import ImageSettings
from .registry import TRAINER_OPTIONS, Adapter, register_adapter
from .ultralytics_env import ultralytics_offline

log = logging.getLogger(__name__)


OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}  # train.optimizer → Ultralytics' name


class YoloParams(ImageSettings):    # size: imgsz, the model's native 640 (224 for classify) if unset
    arch: str
    yolo_task: str                 # detect | segment | pose | classify | obb
    conf: float = 0.25             # prediction: minimum score
    iou: float = 0.7               # prediction: NMS IoU
    mosaic: float = 1.0


class YoloAdapter(Adapter):
    array_inputs = False
    Params = YoloParams
    train_options = TRAINER_OPTIONS | {"optimizer"}  # the schedule is Ultralytics' own warm-up and decay
    fitted_config = ("history",)

    def _imgsz(self) -> int:
        return int(self.params.get("size") or (224 if self.params["yolo_task"] == "classify" else 640))

    def _fit(self, X, y, X_val, y_val, spec, callback, flip_idx=None) -> None:
        """``flip_idx`` (pose): the keypoint each one becomes under a horizontal flip; without it
        Ultralytics trains pose models without flips."""
        ultralytics_offline()
        from ultralytics import YOLO

        from .torch_training import resolve_device

        p, device = self.params, resolve_device(spec.device)
        self.names_ = [str(i) for i in range(self.n_classes)]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            data = (_write_classify(tmp / "data", X, y, X_val, y_val, self.names_) if p["yolo_task"] == "classify"
                    else _write_yolo(tmp / "data", X, y, X_val, y_val, self.names_, flip_idx))
            model = YOLO(self._weights_source(), task=p["yolo_task"])
            history = self.history_ = []

            def on_epoch(trainer):
                if trainer.epoch >= trainer.epochs:  # the final validation of best.pt, not an epoch
                    return
                losses = trainer.label_loss_items(trainer.tloss, prefix="train")
                row = {"epoch": trainer.epoch + 1, "train_loss": float(sum(losses.values())),
                       "val_loss": float(sum(v for k, v in trainer.metrics.items() if k.startswith("val/")))}
                row.update(platform_metrics(trainer.metrics))
                history.append(row)
                callback(row)

            model.add_callback("on_fit_epoch_end", on_epoch)
            # nbs = batch: one optimizer step per batch. Ultralytics accumulates gradients up to 64
            # images by default, which leaves a small data set a handful of steps in a whole run.
            model.train(data=str(data), epochs=spec.epochs, imgsz=self._imgsz(), batch=spec.batch_size,
                        lr0=spec.learning_rate, nbs=spec.batch_size, weight_decay=spec.weight_decay, seed=spec.seed,
                        deterministic=spec.deterministic, device="cpu" if device.type == "cpu" else 0,
                        amp=spec.amp and device.type == "cuda", workers=0, plots=False, val=True,
                        project=str(tmp / "runs"), name="train", exist_ok=True, verbose=False,
                        optimizer=OPTIMIZERS[spec.optimizer], warmup_epochs=min(3, max(spec.epochs // 10, 1)),
                        fliplr=p.get("hflip", 0.5), mosaic=p.get("mosaic", 1.0), patience=spec.early_stopping_patience,
                        pretrained=bool(p.get("pretrained")))
            best = Path(model.trainer.best)
            self.weights_ = (best if best.exists() else Path(model.trainer.last)).read_bytes()
        self._model = None

    def _weights_source(self) -> str:
        """``<arch>.yaml`` (random weights), or ``<arch>.pt`` when pretrained and obtainable."""
        arch = self.params["arch"]
        if not self.params.get("pretrained"):
            return f"{arch}.yaml"
        from ultralytics.utils import SETTINGS

        local = next((str(p) for p in (Path(f"{arch}.pt"), Path(SETTINGS["weights_dir"]) / f"{arch}.pt")
                      if p.is_file()), None)
        if local is None and os.environ.get("YOLO_OFFLINE") == "1":
            raise RecipeError(f"image.pretrained: {arch}.pt is not on this machine and downloads are off; put it "
                              f"in {SETTINGS['weights_dir']}, set YOLO_OFFLINE=0 where there is network, or set "
                              "image.pretrained: false")
        return local or f"{arch}.pt"

    def _yolo(self):
        if getattr(self, "_model", None) is None:
            ultralytics_offline()
            from ultralytics import YOLO

            with tempfile.NamedTemporaryFile(suffix=".pt", delete=False) as f:
                f.write(self.weights_)
            self._model = YOLO(f.name, task=self.params["yolo_task"])
            os.unlink(f.name)
        return self._model

    def _predict(self, X):
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in X]  # Ultralytics reads arrays as BGR
        results = self._yolo().predict(bgr, imgsz=self._imgsz(), conf=self.params.get("conf", 0.25),
                                       iou=self.params.get("iou", 0.7), device="cpu", verbose=False)
        if self.params["yolo_task"] == "classify":
            return np.stack([r.probs.data.cpu().numpy() for r in results])
        return [_instances(r, self.params["yolo_task"]) for r in results]

    def validate(self, X, y, classes: list[str] | None = None) -> dict[str, float]:
        """Ultralytics' validator on these images and (encoded) targets: box mAP, and mask / pose mAP for
        segment / pose models, as platform metric names (``map50``, ``mask_map50_95``, ``pose_map50``, ...),
        and per class present in the labels (``map50_class_<name>``, ``mask_map50_class_<name>``, ...)."""
        with tempfile.TemporaryDirectory() as tmp:
            data = _write_yolo(Path(tmp) / "data", [], [], X, y, [str(i) for i in range(self.n_classes)])
            result = self._yolo().val(data=str(data), split="val", imgsz=self._imgsz(), batch=16, device="cpu",
                                      workers=0, plots=False, verbose=False, project=str(Path(tmp) / "runs"),
                                      name="val", exist_ok=True)
        return {**platform_metrics(result.results_dict),
                **class_metrics(result, self.params["yolo_task"], classes or [str(i) for i in range(self.n_classes)])}

    def _save_weights(self, directory: Path) -> None:
        (directory / "weights.pt").write_bytes(self.weights_)

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        self.weights_, self._model = (directory / "weights.pt").read_bytes(), None


# Ultralytics' metric names → the platform's: (B)ox, (M)ask, (P)ose.
_PREFIX = {"B": "", "M": "mask_", "P": "pose_"}
_NAME = {"precision": "precision", "recall": "recall", "mAP50": "map50", "mAP50-95": "map50_95"}


def platform_metrics(metrics: dict) -> dict[str, float]:
    """``metrics/mAP50-95(M)`` → ``mask_map50_95``; other keys (losses, fitness) are left out."""
    out = {}
    for key, value in metrics.items():
        name, _, part = key.removeprefix("metrics/").rstrip(")").partition("(")
        if key.startswith("metrics/") and name in _NAME and part in _PREFIX:
            out[_PREFIX[part] + _NAME[name]] = float(value)
    return out


def class_metrics(result, yolo_task: str, classes: list[str]) -> dict[str, float]:
    """Per class from Ultralytics' validator: ``class_result(i)`` gives precision, recall, mAP50 and
    mAP50-95 of the i-th class it saw, for boxes and then for masks (segment) or keypoints (pose)."""
    from ..gate import per_class

    parts = ["", *{"segment": ["mask_"], "pose": ["pose_"]}.get(yolo_task, [])]
    out = {}
    for i, c in enumerate(result.ap_class_index):
        values = result.class_result(i)
        for j, prefix in enumerate(parts):
            p, r, map50 = values[4 * j:4 * j + 3]
            out.update({per_class(f"{prefix}map50", classes[int(c)]): float(map50),
                        per_class(f"{prefix}precision", classes[int(c)]): float(p),
                        per_class(f"{prefix}recall", classes[int(c)]): float(r)})
    return out


def _instances(r, yolo_task: str) -> dict[str, Any]:
    """One Ultralytics result → boxes, scores, classes and the task's masks, keypoints or rotated boxes."""
    boxes = r.obb if yolo_task == "obb" else r.boxes
    out = {"boxes": boxes.xyxy.cpu().numpy(), "scores": boxes.conf.cpu().numpy(),
           "classes": boxes.cls.cpu().numpy().astype(int)}
    if yolo_task == "obb":
        out["rotated_boxes"] = list(r.obb.xywhr.cpu().numpy())  # cx, cy, w, h, r (radians)
        out["corners"] = list(r.obb.xyxyxyxy.cpu().numpy())
    if yolo_task == "segment":  # a polygon [p, 2] per instance, pixels of the input image
        out["masks"] = list(r.masks.xy) if r.masks is not None else []
    if yolo_task == "pose":  # [K, 3] per instance: x, y, confidence
        out["keypoints"] = list(r.keypoints.data.cpu().numpy()) if r.keypoints is not None else []
    return out


def _label_line(target: dict, n: int, w: int, h: int) -> str:
    """Instance ``n`` of an image's target as a YOLO label line, normalised by width and height."""
    scale = np.array([w, h])
    c = int(target["classes"][n])
    points = next((target[k] for k in ("polygons", "corners") if k in target), None)  # segment, obb
    if points is not None:
        values = (np.asarray(points[n]).reshape(-1, 2) / scale).ravel()
    else:
        x0, y0, x1, y1 = np.asarray(target["boxes"]).reshape(-1, 4)[n]
        values = np.array([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])
        if "keypoints" in target:
            kpts = np.asarray(target["keypoints"][n], dtype=float).reshape(-1, 3) / [w, h, 1]
            values = np.concatenate([values, kpts.ravel()])
    return f"{c} " + " ".join(f"{v:.6f}" for v in values)


def _write_yolo(root: Path, X, y, X_val, y_val, names: list[str], flip_idx=None) -> Path:
    """The YOLO layout Ultralytics trains from: images + normalised labels, absolute paths (pose:
    ``kpt_shape`` from the keypoints, and ``flip_idx`` when known). With no train images, train names
    the val images."""
    from PIL import Image

    kpt_shape = None
    for split, images, targets in (("train", X, y), ("val", X_val, y_val)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for n, (image, target) in enumerate(zip(images, targets)):
            h, w = image.shape[:2]
            Image.fromarray(image).save(root / split / "images" / f"{n:06d}.png")
            rows = [_label_line(target, i, w, h) for i in range(len(target["classes"]))]
            (root / split / "labels" / f"{n:06d}.txt").write_text("\n".join(rows))
            if target.get("keypoints") is not None and len(target["keypoints"]):
                kpt_shape = [len(np.asarray(target["keypoints"][0]).ravel()) // 3, 3]
    spec = {"path": str(root), "train": "train/images" if len(X) else "val/images", "val": "val/images",
            "names": dict(enumerate(names))}
    if kpt_shape:
        spec["kpt_shape"] = kpt_shape
        if flip_idx and len(flip_idx) == kpt_shape[0]:
            spec["flip_idx"] = list(flip_idx)
    (root / "data.yaml").write_text(json.dumps(spec))
    return root / "data.yaml"


def _write_classify(root: Path, X, y, X_val, y_val, names: list[str]) -> Path:
    """Ultralytics classification reads a folder with train/ and val/ ImageFolders."""
    from PIL import Image

    for split, images, labels in (("train", X, y), ("val", X_val, y_val)):
        for n, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{n:06d}.png")
        for name in names:  # every class folder must exist in both splits
            (root / split / name).mkdir(parents=True, exist_ok=True)
    return root


# arch, Ultralytics task, params (M, built from its YAML with the default class count), native input size,
# batch, lr, tags.
TASKS = {"detect": "detection", "classify": "classification", "segment": "segmentation", "pose": "pose",
         "obb": "obb"}
for _arch, _task, _m, _size, _batch, _lr, _tags in [
    ("yolov8n", "detect", 3.2, 640, 16, 1e-2, ("fast", "small")),
    ("yolov8s", "detect", 11.2, 640, 16, 1e-2, ("accurate",)),
    ("yolo11n", "detect", 2.6, 640, 16, 1e-2, ("fast", "small")),
    ("yolo11s", "detect", 9.4, 640, 16, 1e-2, ("accurate",)),
    ("yolo11n-seg", "segment", 2.9, 640, 16, 1e-2, ("fast", "small")),
    ("yolov8n-seg", "segment", 3.4, 640, 16, 1e-2, ("fast",)),
    ("yolo11n-pose", "pose", 2.9, 640, 16, 1e-2, ("fast", "small")),
    ("yolo11n-cls", "classify", 2.8, 224, 64, 1e-2, ("fast", "small")),
    ("yolov8n-cls", "classify", 2.7, 224, 64, 1e-2, ("fast",)),
    ("yolo11n-obb", "obb", 2.7, 1024, 8, 1e-2, ("fast", "aerial")),
]:
    register_adapter(_arch, framework="ultralytics", tasks=(TASKS[_task],), family="image", tags=_tags,
                     description=f"Ultralytics {_arch} ({_task})", defaults={"arch": _arch, "yolo_task": _task},
                     params_m=_m, input_size=_size, batch_size=_batch, learning_rate=_lr)(YoloAdapter)
