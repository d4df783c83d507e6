"""Instance tasks: detection, segmentation, pose and oriented boxes (OBB), one ``Kind`` each.

A kind says what one labelled instance holds, how it is read and checked from a YOLO label line or a
COCO annotation, which metrics evaluate reports and how they are obtained. Every instance has a box
(xyxy, pixels) and a class; three kinds add one column to the canonical image table (pixels):

    segmentation  polygons   [x1, y1, ..., xn, yn]            YOLO  ``class x1 y1 ... xn yn`` (n >= 3)
    pose          keypoints  [x1, y1, v1, ..., xK, yK, vK]    YOLO  ``class cx cy w h x1 y1 [v1] ...`` (kpt_shape)
    obb           corners    [x1, y1, ..., x4, y4]            YOLO  ``class x1 y1 x2 y2 x3 y3 x4 y4``

YOLO coordinates are normalised to [0, 1]; a line with the wrong number of values, a value that is
not a number or lies outside [0, 1], a class out of range or a visibility other than 0/1/2 stops
load with the file, the line and what was expected. COCO carries boxes (``bbox``), segmentation
(polygon lists; an instance in several parts is joined into one polygon as Ultralytics' converter
does) and keypoints; it has no rotated boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError

TOLERANCE = 1e-3  # normalised coordinates a rounding error outside [0, 1] are clipped, not refused


@dataclass(frozen=True)
class Kind:
    task: str
    column: str | None          # the canonical table's column beside boxes and box_labels
    yolo_line: str              # what a YOLO label line holds, for messages
    metrics: tuple[str, ...]    # what evaluate reports (check.py validates gates against these)
    primary_metric: str
    validator: bool             # evaluate asks the model's own validator (Ultralytics') for the metrics;
                                # detection matches boxes itself, so any detector is scored alike
    reads_coco = True           # COCO annotations can carry this kind's labels

    def yolo_values(self, n_values: int, spec: dict) -> bool:
        return n_values == 5

    def from_yolo(self, v: np.ndarray, spec: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """Normalised values after the class → (box xyxy, extra points as [m, 2] or None), normalised."""
        cx, cy, w, h = v[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), None

    def from_coco(self, ann: dict, where: str, spec: dict) -> tuple[list[float], list[float] | None]:
        """A COCO annotation → (box xyxy in pixels, the extra column's flat values in pixels or None)."""
        x, y, w, h = _numbers(ann.get("bbox"), 4, f"{where} bbox", "[x, y, width, height]")
        return [x, y, x + w, y + h], None


def _numbers(values, n: int | None, where: str, expected: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {values!r} is not a list of numbers; expected {expected}") from None
    if n is not None and len(out) != n:
        raise DataError(f"{where}: {len(out)} values; expected {expected}")
    return out


class Segmentation(Kind):
    def yolo_values(self, n_values, spec):
        return n_values >= 7 and n_values % 2 == 1

    def from_yolo(self, v, spec):  # x y pairs; the box is their bounds
        points = v.reshape(-1, 2)
        return np.concatenate([points.min(0), points.max(0)]), points

    def from_coco(self, ann, where, spec):
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            raise DataError(f"{where}: segmentation is a run-length mask but the annotation is not a crowd "
                            "(iscrowd: 0); expected polygons [[x1, y1, x2, y2, ...], ...] (convert the mask to "
                            "polygons first; crowd annotations, iscrowd: 1, are left out)")
        if not isinstance(seg, list) or not seg:
            raise DataError(f"{where}: no segmentation; expected polygons [[x1, y1, x2, y2, ...], ...]")
        parts = []
        for part in seg:
            flat = _numbers(part, None, f"{where} segmentation", "[x1, y1, x2, y2, ...] polygons")
            if len(flat) < 6 or len(flat) % 2:
                raise DataError(f"{where}: a segmentation polygon has {len(flat)} values; expected x, y pairs, "
                                "at least 3 points")
            parts.append(np.asarray(flat).reshape(-1, 2))
        points = merge_parts(parts)
        return [*points.min(0), *points.max(0)], points.ravel().tolist()


class Pose(Kind):
    def yolo_values(self, n_values, spec):
        k, d = spec["kpt_shape"]
        return n_values == 5 + k * d

    def from_yolo(self, v, spec):
        k, d = spec["kpt_shape"]
        box, _ = Kind.from_yolo(self, v, spec)
        points = v[4:].reshape(k, d)
        if d == 3 and not np.isin(points[:, 2], (0, 1, 2)).all():
            raise DataError(f"keypoint visibility {points[:, 2].tolist()}; expected 0 (not labelled), "
                            "1 (hidden) or 2 (visible) after each x y")
        return box, points if d == 3 else np.concatenate([points, np.full((k, 1), 2.0)], 1)

    def from_coco(self, ann, where, spec):
        box, _ = Kind.from_coco(self, ann, where, spec)
        k = spec["kpt_shape"][0]
        flat = _numbers(ann.get("keypoints"), 3 * k, f"{where} keypoints", f"{3 * k} values (x, y, v for {k} "
                        "keypoints, as the category's 'keypoints' list names them)")
        return box, flat


class Oriented(Segmentation):  # four corners, read as a polygon is
    reads_coco = False

    def yolo_values(self, n_values, spec):
        return n_values == 9

    def from_coco(self, ann, where, spec):
        raise DataError(f"{where}: COCO has no rotated boxes; task 'obb' reads the YOLO OBB layout "
                        "(class x1 y1 x2 y2 x3 y3 x4 y4 per line)")


_BOX = ("map50", "map50_95", "precision", "recall")
KINDS: dict[str, Kind] = {k.task: k for k in (
    Kind("detection", None, "class cx cy w h", _BOX, "map50_95", validator=False),
    Segmentation("segmentation", "polygons", "class x1 y1 x2 y2 ... xn yn (a polygon of at least 3 points)",
                 _BOX + tuple(f"mask_{m}" for m in _BOX), "mask_map50_95", validator=True),
    Pose("pose", "keypoints", "class cx cy w h, then x y (v) per keypoint as data.yaml's kpt_shape says",
         _BOX + tuple(f"pose_{m}" for m in _BOX), "pose_map50_95", validator=True),
    Oriented("obb", "corners", "class x1 y1 x2 y2 x3 y3 x4 y4 (the four corners)", _BOX, "map50_95",
             validator=True),
)}
INSTANCE_TASKS = tuple(KINDS)


def kind(task: str) -> Kind:
    return KINDS[task]


def parse_yolo_line(task: str, line: str, where: str, names: list[str], spec: dict,
                    size: tuple[int, int]) -> tuple[list[float], str, list[float] | None]:
    """One YOLO label line → (box xyxy px, class name, the kind's extra values px or None); DataError
    naming ``where`` (file and line) and what was expected."""
    k = KINDS[task]
    fields = line.split()
    try:
        values = np.array([float(v) for v in fields])
    except ValueError:
        raise DataError(f"{where}: {line.strip()!r} holds a value that is not a number; expected "
                        f"'{k.yolo_line}'") from None
    if not k.yolo_values(len(values), spec):
        raise DataError(f"{where}: {len(values)} values; expected '{k.yolo_line}'"
                        + (f" = {5 + spec['kpt_shape'][0] * spec['kpt_shape'][1]} values for kpt_shape "
                           f"{spec['kpt_shape']}" if spec.get("kpt_shape") and k.column == "keypoints" else ""))
    cls = values[0]
    if not (cls.is_integer() and 0 <= cls < len(names)):
        raise DataError(f"{where}: class index {cls:g} is out of range; expected 0..{len(names) - 1} ({names})")
    try:
        box, points = k.from_yolo(values[1:], spec)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    coords = np.concatenate([box, points[:, :2].ravel() if points is not None else []])
    if coords.min() < -TOLERANCE or coords.max() > 1 + TOLERANCE:
        bad = coords[(coords < -TOLERANCE) | (coords > 1 + TOLERANCE)][0]
        raise DataError(f"{where}: coordinate {bad:g} lies outside the image; expected '{k.yolo_line}' with every "
                        "coordinate normalised to [0, 1] by the image's width or height")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise DataError(f"{where}: the instance has no area (box {np.round(box, 5).tolist()}); expected "
                        f"'{k.yolo_line}'")
    w, h = size
    scale = np.array([w, h, w, h])
    box_px = (np.clip(box, 0, 1) * scale).tolist()
    if points is None:
        return box_px, names[int(cls)], None
    points = points.copy()
    points[:, :2] = np.clip(points[:, :2], 0, 1) * [w, h]
    return box_px, names[int(cls)], points.ravel().tolist()


def yolo_spec(task: str, spec: dict, spec_path) -> dict:
    """What a kind needs from data.yaml beside the names: pose's ``kpt_shape`` [K, 2 or 3]."""
    if KINDS[task].column != "keypoints":
        return {}
    shape = spec.get("kpt_shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) for v in shape)
            and shape[0] > 0 and shape[1] in (2, 3)):
        raise DataError(f"{spec_path}: kpt_shape is {shape!r}; task 'pose' expects kpt_shape: [K, 3] "
                        "(x, y, visibility per keypoint) or [K, 2]")
    flip_idx = spec.get("flip_idx")
    if flip_idx is not None and not (isinstance(flip_idx, list) and all(type(i) is int for i in flip_idx)
                                     and sorted(flip_idx) == list(range(shape[0]))
                                     and all(flip_idx[i] == k for k, i in enumerate(flip_idx))):
        raise DataError(f"{spec_path}: flip_idx is {flip_idx!r}; expected for each of the {shape[0]} keypoints the "
                        f"index of the keypoint it becomes when the image is flipped left to right (a reordering "
                        f"of 0..{shape[0] - 1} made of swapped pairs, e.g. left eye <-> right eye, since a second "
                        f"flip undoes the first)")
    return {"kpt_shape": shape, "flip_idx": flip_idx}


def coco_spec(task: str, categories: list[dict], spec_path) -> dict:
    """COCO keypoints: K from the categories' ``keypoints`` names (all categories alike)."""
    if KINDS[task].column != "keypoints":
        return {}
    counts = {len(c.get("keypoints") or []) for c in categories}
    if len(counts) != 1 or 0 in counts:
        raise DataError(f"{spec_path}: task 'pose' expects every category to name its keypoints "
                        f"('keypoints': [...], the same number in each); found counts {sorted(counts)}")
    return {"kpt_shape": [counts.pop(), 3], "flip_idx": flip_from_names(categories[0]["keypoints"])}


def flip_from_names(names: list[str]) -> list[int] | None:
    """What a left-right flip does to COCO keypoints, read from their names: ``left_eye`` and
    ``right_eye`` swap, ``nose`` stays. None (no flips in training) when no name says left or right,
    or one has no partner: then the names do not tell."""
    import re

    side = re.compile(r"(?<![a-z])(left|right)(?![a-z])", re.IGNORECASE)
    swap = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}
    mirrored = [side.sub(lambda m: swap.get(m.group(0), m.group(0)), str(n)) for n in names]
    if mirrored == list(names) or len(set(names)) != len(names) or not set(mirrored) <= set(names):
        return None
    return [list(names).index(m) for m in mirrored]


def check_coco_instance(task: str, ann: dict, where: str, spec: dict, image: str, size: tuple[int, int]):
    """A COCO annotation → (box xyxy px, extra values px or None), inside the image."""
    box, extra = KINDS[task].from_coco(ann, where, spec)
    w, h = size
    if extra is not None:  # first: a polygon's box is its points' bounds
        step = 3 if KINDS[task].column == "keypoints" else 2
        xy = np.asarray(extra, dtype=float).reshape(-1, step)[:, :2]
        if xy.min() < -1 or (xy[:, 0] > w + 1).any() or (xy[:, 1] > h + 1).any():
            raise DataError(f"{where}: a point of its {KINDS[task].column} lies outside image {image} ({w}x{h}); "
                            "expected pixel coordinates inside it")
    x0, y0, x1, y1 = box
    if x0 < -1 or y0 < -1 or x1 > w + 1 or y1 > h + 1 or x1 <= x0 or y1 <= y0:
        raise DataError(f"{where} box {ann.get('bbox', np.round(box, 2).tolist())} lies outside image {image} "
                        f"({w}x{h}) or has no area; expected [x, y, width, height] inside it")
    return [max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)], extra


def merge_parts(parts: list[np.ndarray]) -> np.ndarray:
    """Several polygons of one instance → one, joined at their closest points and walked back (the
    zero-width seams Ultralytics' COCO converter makes), so one YOLO line holds the whole instance."""
    if len(parts) == 1:
        return parts[0]
    out = parts[0]
    for part in parts[1:]:
        d = ((out[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        part = np.roll(part, -j, axis=0)
        out = np.concatenate([out[:i + 1], part, part[:1], out[i:]])
    return out


def targets(task: str, df) -> list[dict[str, Any]]:
    """The canonical table's rows → per image ``{"boxes" [m, 4], "labels", <column>: [m arrays]}``."""
    column = KINDS[task].column
    out = []
    for n, (boxes, labels) in enumerate(zip(df["boxes"], df["box_labels"])):
        t = {"boxes": np.asarray(list(boxes), dtype=np.float32).reshape(-1, 4), "labels": list(labels)}
        if column:
            t[column] = [np.asarray(v, dtype=np.float32) for v in df[column].iloc[n]]
        out.append(t)
    return out


def encode(truth: list[dict], classes: list[str]) -> list[dict]:
    """Class names → indices, what adapters train and validate on (the other keys pass through)."""
    index = {c: i for i, c in enumerate(classes)}
    return [{**{k: v for k, v in t.items() if k != "labels"},
             "classes": np.array([index[c] for c in t["labels"]], dtype=np.int64)} for t in truth]


def answers(raw: list[dict], classes: list[str]) -> list[dict]:
    """The adapter's raw instances as answers: boxes (xyxy px, to 0.01 px), class names, scores, and
    what the task adds (mask polygons, keypoints [x, y, conf], rotated boxes), to 0.001."""
    out = []
    for d in raw:
        answer = {"boxes": np.round(np.asarray(d["boxes"], dtype=float).reshape(-1, 4), 2).tolist(),
                  "labels": [classes[int(c)] for c in d["classes"]],
                  "scores": np.round(np.asarray(d["scores"], dtype=float), 5).tolist()}
        for key, value in d.items():
            if key not in ("boxes", "classes", "scores"):
                answer[key] = [np.round(np.asarray(v, dtype=float), 3).tolist() for v in value]
        out.append(answer)
    return out
