"""Tiny synthetic shape datasets in YOLO layout for segmentation, pose and oriented boxes (data/shapes-*).

Each image is 96 x 96 px: a few filled shapes on a noisy, smoothly shaded background, saved as JPEG.
The labels are exact (the shapes are drawn from them):

  data/shapes-seg   classes circle, triangle, square; one polygon per shape   (class x1 y1 ... xn yn)
  data/shapes-pose  class card: a rectangle tilted by up to 25 degrees, its four corners as keypoints
                    in the order top-left, top-right, bottom-right, bottom-left (kpt_shape [4, 3],
                    flip_idx [1, 0, 3, 2])                                   (class cx cy w h x y v ...)
  data/shapes-obb   classes bar (long, thin), block (squarer), rotated freely  (class x1 y1 ... x4 y4)

Run ``python scripts/make_shapes_data.py`` to write them again (seeded: the same files every time).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE, IMAGES, QUALITY = 96, 96, 85
ROOT = Path(__file__).resolve().parents[1] / "data"
COLORS = [(230, 60, 50), (60, 200, 80), (60, 90, 230), (240, 200, 40), (200, 70, 220)]


def background(rng: np.random.Generator) -> Image.Image:
    """A smooth random shade plus pixel noise: shapes must be told from texture, not from a flat colour."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = rng.uniform(60, 160, 3) + rng.uniform(-40, 40, 3) * x[..., None] + rng.uniform(-40, 40, 3) * y[..., None]
    noise = rng.normal(0, 18, (SIZE, SIZE, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def rotated_rect(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """Corners [4, 2] of a w x h rectangle turned by ``angle`` radians: top-left, top-right, bottom-right, bottom-left."""
    c, s = math.cos(angle), math.sin(angle)
    local = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return local @ np.array([[c, s], [-s, c]]) + [cx, cy]


def inside(points: np.ndarray, margin: float = 1.0) -> bool:
    return bool(points.min() >= margin and points.max() <= SIZE - 1 - margin)


def place(rng, shapes: list[np.ndarray], make, tries: int = 50) -> np.ndarray | None:
    """A new shape from ``make(rng)`` that lies inside the image and keeps clear of the others' boxes."""
    for _ in range(tries):
        pts = make(rng)
        if not inside(pts):
            continue
        lo, hi = pts.min(0), pts.max(0)
        if all(hi[0] < o.min(0)[0] - 2 or lo[0] > o.max(0)[0] + 2 or hi[1] < o.min(0)[1] - 2 or lo[1] > o.max(0)[1] + 2
               for o in shapes):
            return pts
    return None


def polygon(kind: int, rng) -> np.ndarray:
    cx, cy, r = rng.uniform(14, SIZE - 14), rng.uniform(14, SIZE - 14), rng.uniform(9, 17)
    turn = rng.uniform(0, 2 * math.pi)
    sides = {0: 24, 1: 3, 2: 4}[kind]  # circle (as a 24-gon), triangle, square
    t = turn + np.arange(sides) * 2 * math.pi / sides
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def fmt(values) -> str:
    return " ".join(f"{v:.5f}" for v in np.asarray(values, dtype=float).ravel())


def write(name: str, spec: str, draw_one) -> None:
    out = ROOT / name
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    (out / "data.yaml").write_text(spec)
    rng = np.random.default_rng(sum(map(ord, name)))
    for n in range(IMAGES):
        image = background(rng)
        draw = ImageDraw.Draw(image)
        lines, shapes = [], []
        for _ in range(int(rng.integers(1, 4))):
            found = draw_one(rng, shapes, draw)
            if found:
                pts, line = found
                shapes.append(pts)
                lines.append(line)
        image.save(out / "images" / f"{n:03d}.jpg", quality=QUALITY)
        (out / "labels" / f"{n:03d}.txt").write_text("\n".join(lines) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {IMAGES} images, {size / 1024:.0f} KiB")


def seg_shape(rng, shapes, draw):
    kind = int(rng.integers(0, 3))
    pts = place(rng, shapes, lambda r: polygon(kind, r))
    if pts is None:
        return None
    draw.polygon([tuple(p) for p in pts], fill=COLORS[int(rng.integers(0, len(COLORS)))])
    return pts, f"{kind} {fmt(pts / SIZE)}"


def pose_shape(rng, shapes, draw):
    def make(r):
        return rotated_rect(r.uniform(18, SIZE - 18), r.uniform(18, SIZE - 18), r.uniform(22, 40),
                            r.uniform(16, 30), r.uniform(-25, 25) * math.pi / 180)
    pts = place(rng, shapes, make)
    if pts is None:
        return None
    draw.polygon([tuple(p) for p in pts], fill=COLORS[int(rng.integers(0, len(COLORS)))])
    for x, y in pts:  # the corners carry a dot, so each one can be seen
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 255))
    lo, hi = pts.min(0), pts.max(0)
    box = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, hi[0] - lo[0], hi[1] - lo[1]]
    kpts = np.concatenate([pts / SIZE, np.full((4, 1), 2.0)], 1)  # 2: visible
    return pts, f"0 {fmt(np.array(box) / SIZE)} {fmt(kpts)}"


def obb_shape(rng, shapes, draw):
    kind = int(rng.integers(0, 2))
    length, width = (rng.uniform(30, 46), rng.uniform(7, 10)) if kind == 0 else (rng.uniform(18, 26), rng.uniform(13, 18))

    def make(r):
        return rotated_rect(r.uniform(14, SIZE - 14), r.uniform(14, SIZE - 14), length, width, r.uniform(0, math.pi))
    pts = place(rng, shapes, make)
    if pts is None:
        return None
    draw.polygon([tuple(p) for p in pts], fill=COLORS[int(rng.integers(0, len(COLORS)))])
    return pts, f"{kind} {fmt(pts / SIZE)}"


HEADER = "# Synthetic shapes made by scripts/make_shapes_data.py; paths relative to this file.\npath: .\n" \
         "train: images\nval: images\n"

if __name__ == "__main__":
    write("shapes-seg", HEADER + "names:\n  0: circle\n  1: triangle\n  2: square\n", seg_shape)
    write("shapes-pose", HEADER + "kpt_shape: [4, 3]\nflip_idx: [1, 0, 3, 2]\nnames:\n  0: card\n", pose_shape)
    write("shapes-obb", HEADER + "names:\n  0: bar\n  1: block\n", obb_shape)
