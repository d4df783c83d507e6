"""Image datasets → one canonical table, and images in and out of the model.

Layouts read by load: ImageFolder (``<class>/<image>``), YOLO (``data.yaml``, ``images/``,
``labels/`` with one instance per line, normalised, as the task reads it) and COCO (one ``.json``
with images, annotations and categories). The source is a directory, an archive (.zip, .tar,
.tar.gz) or an object-store prefix. Every layout becomes the same table, one row per image:

    image (encoded bytes, as in the source) · name · width · height ·
    label (classification)  |  boxes [[x0, y0, x1, y1] in pixels] + box_labels [class] (detection),
                               + polygons | keypoints | corners (segmentation | pose | obb: instances.py)

and the class names ride in the table's schema metadata, so split, train and evaluate read
one format whatever the layout was.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, InvalidInputError, RequestTooLarge
from . import instances
from .base import Family, FitInputs, TestInputs, one_bytes_input

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")


# --- reading a dataset --------------------------------------------------------------------
@contextmanager
def dataset_root(uri: str) -> Iterator[Path]:
    """A local directory holding the dataset while it is read: the directory itself, the local copy
    of an object-store prefix, or an archive unpacked into a temporary directory (removed after)."""
    from ..settings import platform_home
    from ..storage import expand, is_remote, split_uri

    if is_remote(uri):
        files = expand(uri)
        bucket, key = split_uri(uri)
        path = files[0] if len(files) == 1 and files[0].name.endswith(ARCHIVES) else platform_home() / "cache" / bucket / key
    else:
        path = Path(uri)
        if not path.exists():
            raise DataError(f"image data {uri} does not exist; expected a directory, an archive or an object-store URI")
    if not (path.is_file() and path.name.endswith(ARCHIVES)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="images-") as out:
        yield _unpack(path, Path(out))


def _unpack(archive: Path, out: Path) -> Path:
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(out)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(out, filter="data")  # refuses absolute paths and links out of the folder
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DataError(f"archive {archive} cannot be unpacked ({exc}); expected a .zip or .tar(.gz)") from None
    entries = [p for p in out.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else out


def detect_layout(root: Path) -> str:
    if (root / "data.yaml").is_file() or (root / "dataset.yaml").is_file():
        return "yolo"
    if any(root.glob("*.json")):
        return "coco"
    return "imagefolder"


def _check_image(path: Path, data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            size = img.size
            img.verify()  # catches truncated and corrupt files, not only unknown formats
        return size
    except Exception as exc:  # PIL raises many types; Ultralytics' HEIF hook adds ImportError
        raise DataError(f"image {path} is corrupt or unreadable ({exc}); expected a JPEG, PNG, BMP, WebP or TIFF "
                        "file") from None


def read_imagefolder(root: Path) -> tuple[pd.DataFrame, list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} holds no class folders; expected ImageFolder: <class>/<image> per class")
    rows = []
    for cls in classes:
        files = sorted(p for p in (root / cls).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {root / cls} holds no images; every class needs at least one "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        for path in files:
            data = path.read_bytes()
            w, h = _check_image(path, data)
            rows.append({"image": data, "name": str(path.relative_to(root)), "width": w, "height": h, "label": cls})
    return pd.DataFrame(rows), classes


def read_yolo(root: Path, task: str = "detection") -> tuple[pd.DataFrame, list[str], dict]:
    """YOLO layout; each label line is read and checked as the task's kind says (``instances.py``)."""
    import yaml

    spec_path = root / "data.yaml" if (root / "data.yaml").is_file() else root / "dataset.yaml"
    spec = yaml.safe_load(spec_path.read_text()) or {}
    names = spec.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise DataError(f"{spec_path} has no 'names'; expected the class names as a list or {{id: name}}")
    kind_spec = instances.yolo_spec(task, spec, spec_path)
    column = instances.kind(task).column
    images = {p.stem: p for p in sorted((root / "images").rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in sorted((root / "labels").rglob("*.txt"))}
    if not images:
        raise DataError(f"{root / 'images'} holds no images; expected the YOLO layout images/ + labels/")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DataError(f"label file(s) {orphans[:5]} have no image of the same name in {root / 'images'}; "
                        "expected images/<name>.<ext> beside labels/<name>.txt")
    rows = []
    for stem, path in images.items():
        data = path.read_bytes()
        w, h = _check_image(path, data)
        row = {"image": data, "name": str(path.relative_to(root)), "width": w, "height": h, "boxes": [],
               "box_labels": [], **({column: []} if column else {})}
        lines = labels[stem].read_text().split("\n") if stem in labels else []  # no label file: background
        for n, line in enumerate(lines):
            if line.strip():
                box, label, extra = instances.parse_yolo_line(task, line, f"{labels[stem]} line {n + 1}", names,
                                                              kind_spec, (w, h))
                row["boxes"].append(box)
                row["box_labels"].append(label)
                if column:
                    row[column].append(extra)
        rows.append(row)
    return pd.DataFrame(rows), list(names), kind_spec


def read_coco(root: Path, task: str = "detection") -> tuple[pd.DataFrame, list[str], dict]:
    """COCO JSON: boxes, and for segmentation / pose the polygons / keypoints (``instances.py``)."""
    spec_path = sorted(root.glob("*.json"))[0]
    try:
        spec = json.loads(spec_path.read_text())
        categories = {c["id"]: c["name"] for c in spec["categories"]}
        images = {i["id"]: i for i in spec["images"]}
        annotations = spec.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{spec_path} is not COCO JSON ({exc}); expected images, annotations and categories") from None
    kind_spec = instances.coco_spec(task, spec["categories"], spec_path)
    column = instances.kind(task).column
    per_image: dict[Any, list] = {i: [] for i in images}
    # Crowd annotations (iscrowd: 1, a run-length mask over many objects) are regions COCO's own evaluation
    # ignores; Ultralytics' COCO converter drops them too. Training on them would teach one box per crowd.
    crowds = sum(1 for ann in annotations if isinstance(ann, dict) and ann.get("iscrowd"))
    if crowds:
        log.info("%s: %d crowd annotation(s) (iscrowd: 1) left out, as COCO's evaluation does", spec_path, crowds)
    for ann in annotations:
        if isinstance(ann, dict) and ann.get("iscrowd"):
            continue
        if ann.get("image_id") not in images:
            raise DataError(f"{spec_path}: annotation {ann.get('id')} names image_id {ann.get('image_id')!r}, "
                            "which is not in 'images'")
        if ann.get("category_id") not in categories:
            raise DataError(f"{spec_path}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}; "
                            f"expected one of {sorted(categories)}")
        per_image[ann["image_id"]].append(ann)
    names = [categories[k] for k in sorted(categories)]
    rows = []
    for image_id, info in images.items():
        path = next((p for p in (root / info["file_name"], root / "images" / info["file_name"]) if p.is_file()), None)
        if path is None:
            raise DataError(f"{spec_path}: image {info['file_name']!r} is not in {root} or {root / 'images'}")
        data = path.read_bytes()
        w, h = _check_image(path, data)
        row = {"image": data, "name": info["file_name"], "width": w, "height": h, "boxes": [], "box_labels": [],
               **({column: []} if column else {})}
        for ann in per_image[image_id]:
            box, extra = instances.check_coco_instance(task, ann, f"{spec_path}: annotation {ann.get('id')}",
                                                       kind_spec, info["file_name"], (w, h))
            row["boxes"].append(box)
            row["box_labels"].append(categories[ann["category_id"]])
            if column:
                row[column].append(extra)
        rows.append(row)
    return pd.DataFrame(rows), names, kind_spec


def read_dataset(uri: str, layout: str = "auto", task: str = "detection") -> tuple[pd.DataFrame, list[str], str]:
    """The images and their labels as one frame, the class names and the layout read."""
    return read_dataset_and_spec(uri, layout, task)[:3]


def read_dataset_and_spec(uri: str, layout: str = "auto", task: str = "detection"):
    """``read_dataset`` and what the task's kind read from the data set's own description (pose:
    ``kpt_shape``, and ``flip_idx`` where data.yaml gives it or the COCO keypoint names imply it)."""
    with dataset_root(uri) as root:  # the frame holds the images' bytes: nothing refers to root after
        layout = detect_layout(root) if layout == "auto" else layout
        if layout != "imagefolder" and task not in instances.INSTANCE_TASKS:
            raise DataError(f"{uri} is in {layout} layout, which holds instance labels; task {task!r} reads "
                            "an ImageFolder (<class>/<image>)")
        df, classes, kind_spec = (*read_imagefolder(root), {}) if layout == "imagefolder" else \
            {"yolo": read_yolo, "coco": read_coco}[layout](root, task)
    log.info("read %d images in %s layout, %d classes: %s", len(df), layout, len(classes), classes)
    return df, classes, layout, kind_spec


# --- the canonical table through preprocess -----------------------------------------------
def clean_images(df: pd.DataFrame, recipe, classes: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    import hashlib

    digests = df["image"].map(lambda b: hashlib.sha256(b).hexdigest())
    duplicates = int(digests.duplicated().sum())
    df = df.loc[~digests.duplicated()].reset_index(drop=True)
    target = "label" if recipe.task == "classification" else "box_labels"
    counts = (df["label"].value_counts() if target == "label"
              else pd.Series([c for labels in df["box_labels"] for c in labels]).value_counts())
    schema = {"target": target, "classes": classes, "features": [{"name": "image", "kind": "image"}],
              "n_rows": len(df), "rows": {"duplicates_dropped": duplicates},
              "class_counts": {c: int(counts.get(c, 0)) for c in classes},
              "image_sizes": {"min": [int(df["width"].min()), int(df["height"].min())],
                              "max": [int(df["width"].max()), int(df["height"].max())]}}
    return df, schema


def images_markdown(schema: dict[str, Any]) -> str:
    lines = [f"# Image data: {schema['n_rows']} images, {len(schema['classes'])} classes", "",
             f"Sizes from {schema['image_sizes']['min']} to {schema['image_sizes']['max']} px; "
             f"{schema['rows']['duplicates_dropped']} duplicate image(s) dropped.", "",
             "| class | " + ("images" if schema["target"] == "label" else "boxes") + " |", "|---|---|"]
    lines += [f"| {c} | {n} |" for c, n in schema["class_counts"].items()]
    return "\n".join(lines) + "\n"


# --- images in and out of the model --------------------------------------------------------
def decode(data: bytes, where: str = "image") -> np.ndarray:
    """Encoded bytes → RGB uint8 array [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.array(img.convert("RGB"))  # writable: torch warns on read-only arrays
    except Exception as exc:  # PIL raises many types; Ultralytics' HEIF hook adds ImportError
        raise InvalidInputError(f"{where} cannot be decoded ({exc}); expected JPEG, PNG, BMP, WebP or TIFF "
                                "bytes") from None


def request_images(records) -> list[np.ndarray]:
    """What a client sends (bytes, base64 strings, or {"b64": ...} objects) → decoded images."""
    if isinstance(records, pd.DataFrame):  # MLflow pyfunc hands an "image" column over
        records = records["image"].tolist()
    images = []
    for n, item in enumerate(records):
        if isinstance(item, dict):
            item = item.get("b64", item.get("image"))
        if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 3:
            images.append(item)  # already decoded (evaluate, tests)
            continue
        if isinstance(item, str):
            try:
                item = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInputError(f"instance {n} is not valid base64; expected a base64-encoded image "
                                        'string or {"b64": "..."}') from None
        if not isinstance(item, (bytes, bytearray)):
            raise InvalidInputError(f"instance {n} is a {type(item).__name__}; expected a base64-encoded image")
        images.append(decode(bytes(item), f"instance {n}"))
    if not images:
        raise InvalidInputError("no images in the request; expected at least one")
    return images


# --- request limits: checked from image headers before anything is decoded ------------------
@dataclass
class Limits:
    max_images: int = 64                  # images per request
    max_image_pixels: int = 4096 * 4096   # width × height of one image
    max_request_pixels: int = 4096 * 4096  # all images of one request (about 7 bytes a pixel while decoding)


LIMITS = Limits()


def configure(max_images: int, max_image_pixels: int, max_request_pixels: int) -> None:
    """Set the image limits (``python -m serving`` flags)."""
    from PIL import Image

    LIMITS.max_images, LIMITS.max_image_pixels, LIMITS.max_request_pixels = \
        max_images, max_image_pixels, max_request_pixels
    # PIL refuses over twice its own limit at open, before our check can name the size: keep its
    # limit (89 MP) as the backstop for the decoder, raised where the configured one is higher.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_image_pixels)


def _looks_encoded(value) -> bool:
    """Base64 sent as bytes starts with a base64 letter; JPEG/PNG/... signatures do not."""
    return isinstance(value, bytes) and (value[:1].isalnum() or value[:1] in (b"+", b"/"))


def checked_images(items: list) -> list:
    """Each image's size from its header, against the limits, before anything is decoded.

    Returns the images as bytes; what is not an image is passed on unchanged for the decoder to
    name. Runs in a worker thread (headers of up to ``max_images`` images).
    """
    from PIL import Image

    if len(items) > LIMITS.max_images:
        raise RequestTooLarge(f"{len(items)} images in one request; at most {LIMITS.max_images} (--max_images)")
    out, total = [], 0
    for n, item in enumerate(items):
        data = item.get("b64", item.get("image")) if isinstance(item, dict) else item
        if isinstance(data, str):
            try:
                data = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                out.append(item)  # request_images says what is wrong with it
                continue
        if not isinstance(data, (bytes, bytearray)):
            out.append(item)
            continue
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except Image.DecompressionBombError as exc:
            raise RequestTooLarge(f"instance {n} is refused by the image decoder ({exc}); at most "
                                  f"{LIMITS.max_image_pixels:,} pixels per image (--max_image_pixels)") from None
        except Exception:  # not an image: the decoder names it
            out.append(bytes(data))
            continue
        pixels = width * height
        if pixels > LIMITS.max_image_pixels:
            raise RequestTooLarge(f"instance {n} is {width}x{height} = {pixels:,} pixels; at most "
                                  f"{LIMITS.max_image_pixels:,} per image (--max_image_pixels); send it smaller")
        total += pixels
        if total > LIMITS.max_request_pixels:
            raise RequestTooLarge(f"the images up to instance {n} hold {total:,} pixels; at most "
                                  f"{LIMITS.max_request_pixels:,} per request (--max_request_pixels); send fewer "
                                  "or smaller images")
        out.append(bytes(data))
    return out


# --- the family (see components/tasks/base.py) -------------------------------------------------

class ImageFamily(Family):
    """Encoded images with a class label (ImageFolder) or instances (YOLO, COCO: boxes, masks, keypoints,
    rotated boxes), as one canonical table."""
    name = "image"
    section = "image"
    split_methods = ("random", "stratified")
    stacks_rows = False  # one request's images go through the model at a time
    top_k = 5

    def check_recipe(self, recipe) -> None:
        if recipe.task not in ("classification", *instances.INSTANCE_TASKS):
            raise ValueError(f"image recipes have task 'classification' or one of {list(instances.INSTANCE_TASKS)}")
        if recipe.task != "classification" and recipe.image.layout == "imagefolder":
            raise ValueError(f"task {recipe.task!r} reads YOLO or COCO data, not image.layout 'imagefolder'")
        if recipe.image.layout == "coco" and not instances.kind(recipe.task).reads_coco:
            raise ValueError(f"task {recipe.task!r} reads the YOLO layout; COCO has no such labels")
        if recipe.split.method not in self.split_methods:
            raise ValueError("image data splits with method 'random' or 'stratified'")

    def label_column(self, recipe) -> str:
        return "label"  # the canonical table's

    def read(self, recipe) -> tuple[pd.DataFrame, dict[str, Any]]:
        import hashlib

        df, classes, layout, kind_spec = read_dataset_and_spec(recipe.data.uri, recipe.image.layout, recipe.task)
        digest = hashlib.sha256()
        for data in df["image"]:
            digest.update(data)
        flip = {"flip_idx": kind_spec["flip_idx"]} if kind_spec.get("flip_idx") else {}
        return df, {"files": df["name"].head(20).tolist(), "data_hash": digest.hexdigest()[:16],
                    "classes": classes, "layout": layout, **flip}

    def clean(self, raw, recipe, info):
        df, schema = clean_images(raw, recipe, info["classes"])
        flip = {"flip_idx": info["flip_idx"]} if info.get("flip_idx") else {}
        return df, {**schema, "layout": info.get("layout", ""), **flip}

    def report(self, schema) -> str:
        return images_markdown(schema)

    def fit_inputs(self, recipe, schema, train_df, val_df, encoding) -> FitInputs:
        """Decoded images and raw targets; the adapter owns resizing, normalisation and augmentation."""
        def decoded(df):
            return [decode(b, n) for b, n in zip(df["image"], df["name"])]

        # Pose: which keypoint a horizontal flip turns each one into (left eye <-> right eye), for
        # Ultralytics, which leaves flips off without it.
        flip = {"flip_idx": schema["flip_idx"]} if schema.get("flip_idx") else {}
        return FitInputs(X_train=decoded(train_df), y_train=_targets(recipe.task, train_df), X_val=decoded(val_df),
                         y_val=_targets(recipe.task, val_df), meta={"image": {"layout": schema.get("layout", ""), **flip}},
                         fit_params=flip)

    def model_inputs(self, meta, transform, records) -> list[np.ndarray]:
        return request_images(records)

    def test_inputs(self, meta, test_df: pd.DataFrame) -> TestInputs:
        """Encoded images, as a client sends them (the bundle decodes), with the truth."""
        return TestInputs([bytes(b) for b in test_df["image"]], _targets(meta.task, test_df))

    def input_example(self, meta, records) -> pd.DataFrame:
        return pd.DataFrame({"image": [base64.b64encode(b).decode() for b in records[:2]]})  # as clients send them

    def v2_records(self, meta, inputs: list) -> list:
        items = one_bytes_input(inputs, "images")
        return [v.decode() if _looks_encoded(v) else v for v in items]  # base64 text or raw bytes, both fine

    def bound(self, records) -> list:
        return checked_images(records)

    def input_types(self, meta) -> list[dict[str, Any]]:
        return [{"name": "image", "datatype": "BYTES", "shape": [-1]}]

    def warmup_records(self, bundle) -> list:
        from PIL import Image

        size = int(bundle.adapter.params.get("size") or getattr(bundle.adapter, "input_size_", None) or 64)
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), (127, 127, 127)).save(buffer, format="PNG")
        return [buffer.getvalue()]


def _targets(task: str, df: pd.DataFrame):
    if task == "classification":
        return df["label"].astype(str).to_numpy()
    return instances.targets(task, df)


FAMILY = ImageFamily()
