"""How the small image and text sets under data/ were made (run once, by hand; not at run time).

    python scripts/make_vision_text_data.py --deepforest-data DIR --debian-packages FILE

- data/digits/<0-9>/*.png: scikit-learn's bundled handwritten digits (8x8, 16 grey levels),
  60 per class, scaled to 32x32 RGB PNG: an ImageFolder set.
- data/trees/: tiles of 200x200 px cut from the annotated aerial images that ship in the
  `deepforest` wheel (NEON sites YELL and OSBS, Pascal VOC boxes), in the YOLO layout
  (images/, labels/, data.yaml), one class "tree"; boxes cut by a tile edge are clipped and
  kept when at least half of them is inside.
- data/text/debian_packages.csv: text,label: the descriptions of Debian packages in four
  archive sections (games, science, sound, fonts), 120 per section: real, labelled, offline.
"""
from __future__ import annotations

import argparse
import csv
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def digits(out: Path, per_class: int = 60) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    for label in range(10):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        idx = rng.choice(np.flatnonzero(d.target == label), per_class, replace=False)
        for i in idx:
            grey = (d.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(grey).resize((32, 32), Image.BILINEAR).convert("RGB").save(folder / f"{i:04d}.png")


def trees(src: Path, out: Path, tile: int = 200) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    n = 0
    for name in ("2019_YELL_2_541000_4977000_image_crop", "2019_YELL_2_528000_4978000_image_crop2", "OSBS_029"):
        image = Image.open(src / f"{name}.png").convert("RGB")
        boxes = [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for o in ET.parse(src / f"{name}.xml").getroot().iter("object")]
        w, h = image.size
        for top in range(0, h - tile + 1, tile):
            for left in range(0, w - tile + 1, tile):
                lines = []
                for x0, y0, x1, y1 in boxes:
                    cx0, cy0 = max(x0, left), max(y0, top)
                    cx1, cy1 = min(x1, left + tile), min(y1, top + tile)
                    if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < 0.5 * (x1 - x0) * (y1 - y0):
                        continue
                    lines.append(f"0 {((cx0 + cx1) / 2 - left) / tile:.6f} {((cy0 + cy1) / 2 - top) / tile:.6f} "
                                 f"{(cx1 - cx0) / tile:.6f} {(cy1 - cy0) / tile:.6f}")
                if not lines:
                    continue
                stem = f"{name}_{top}_{left}"
                image.crop((left, top, left + tile, top + tile)).save(out / "images" / f"{stem}.jpg", quality=92)
                (out / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
                n += 1
    (out / "data.yaml").write_text("# Tiles of NEON aerial images shipped with deepforest; paths relative to this file.\n"
                                   "path: .\ntrain: images\nval: images\nnames:\n  0: tree\n")
    print(f"{n} tiles")


def debian_text(packages: Path, out: Path, per_class: int = 120) -> None:
    wanted = {"games", "science", "sound", "fonts"}
    rows, record = {s: [] for s in wanted}, {}
    for line in packages.read_text(errors="replace").splitlines() + [""]:
        if not line:
            section = record.get("Section", "").split("/")[-1]
            if section in wanted and record.get("Description"):
                rows[section].append(record["Description"])
            record = {}
        elif line.startswith("Description:"):
            record["Description"] = line.split(":", 1)[1].strip()
            record["_long"] = True
        elif line.startswith(" ") and record.get("_long") and len(record["Description"]) < 300 and line.strip() != ".":
            record["Description"] += " " + line.strip()
        elif not line.startswith(" "):
            record.pop("_long", None)
            key, _, value = line.partition(":")
            record[key] = value.strip()
    random.seed(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for section in sorted(wanted):
            for text in random.sample(sorted(set(rows[section])), per_class):
                writer.writerow([text[:300], section])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--deepforest-data", type=Path, required=True)
    parser.add_argument("--debian-packages", type=Path, required=True)
    args = parser.parse_args()
    digits(ROOT / "data" / "digits")
    trees(args.deepforest_data, ROOT / "data" / "trees")
    debian_text(args.debian_packages, ROOT / "data" / "text" / "debian_packages.csv")
