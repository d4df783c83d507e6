"""Image datasets: every layout becomes the same table, and every bad input is named."""
import json
import shutil
import zipfile

import numpy as np
import pytest

from components.errors import DataError
from components.tasks.images import read_dataset
from tests.conftest import DATA


@pytest.fixture()
def folder(tmp_path):
    """Three digit classes, four images each: a small ImageFolder."""
    root = tmp_path / "digits"
    for cls in ("0", "1", "2"):
        (root / cls).mkdir(parents=True)
        for path in sorted((DATA / "digits" / cls).glob("*.png"))[:4]:
            shutil.copy(path, root / cls / path.name)
    return root


@pytest.fixture()
def yolo(tmp_path):
    root = tmp_path / "trees"
    shutil.copytree(DATA / "trees", root)
    return root


def test_imagefolder_from_a_directory_and_an_archive(folder, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    df, classes, layout = read_dataset(str(folder))
    assert (layout, classes, len(df)) == ("imagefolder", ["0", "1", "2"], 12)
    assert set(df.columns) == {"image", "name", "width", "height", "label"} and (df["width"] == 32).all()
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*.png"):
            zf.write(path, path.relative_to(folder.parent))
    from_zip, classes_zip, _ = read_dataset(str(archive))
    assert classes_zip == classes and sorted(from_zip["image"]) == sorted(df["image"])
    assert list(scratch.iterdir()) == [], "the unpacked archive is removed once its images are read"


def test_yolo_and_coco_layouts_give_the_same_boxes(yolo, tmp_path):
    df, classes, layout = read_dataset(str(yolo))
    assert layout == "yolo" and classes == ["tree"] and len(df) == len(list((yolo / "images").iterdir()))
    boxes = np.concatenate([np.asarray(list(b)).reshape(-1, 4) for b in df["boxes"]])
    assert (boxes >= 0).all() and (boxes[:, 2] <= 200).all() and (boxes[:, 2] > boxes[:, 0]).all()
    # The same tiles as COCO JSON: [x, y, w, h] in pixels.
    coco = tmp_path / "coco"
    (coco / "images").mkdir(parents=True)
    spec = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "tree"}]}
    for i, row in df.head(5).iterrows():
        name = row["name"].split("/")[-1]
        (coco / "images" / name).write_bytes(row["image"])
        spec["images"].append({"id": i, "file_name": name, "width": row["width"], "height": row["height"]})
        for j, (x0, y0, x1, y1) in enumerate(np.asarray(list(row["boxes"])).reshape(-1, 4)):
            spec["annotations"].append({"id": i * 1000 + j, "image_id": i, "category_id": 7,
                                        "bbox": [x0, y0, x1 - x0, y1 - y0]})
    (coco / "instances.json").write_text(json.dumps(spec))
    from_coco, coco_classes, coco_layout = read_dataset(str(coco))
    assert coco_layout == "coco" and coco_classes == ["tree"]
    for a, b in zip(from_coco["boxes"], df.head(5)["boxes"]):
        np.testing.assert_allclose(np.asarray(list(a)).reshape(-1, 4), np.asarray(list(b)).reshape(-1, 4), atol=1e-3)


def test_corrupt_image_is_named(folder):
    (folder / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    with pytest.raises(DataError, match=r"broken\.png is corrupt or unreadable"):
        read_dataset(str(folder))


def test_empty_class_folder_is_named(folder):
    (folder / "3").mkdir()
    with pytest.raises(DataError, match=r"class folder .*3 holds no images"):
        read_dataset(str(folder))


def test_label_index_out_of_range(yolo):
    label = sorted((yolo / "labels").glob("*.txt"))[0]
    label.write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"class index 3 is out of range; expected 0\.\.0"):
        read_dataset(str(yolo))


def test_box_outside_the_image(yolo):
    label = sorted((yolo / "labels").glob("*.txt"))[0]
    label.write_text("0 0.95 0.5 0.3 0.1\n")
    with pytest.raises(DataError, match="lies outside the image"):
        read_dataset(str(yolo))


def test_label_without_an_image(yolo):
    (yolo / "labels" / "no_such_tile.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"\['no_such_tile'\] have no image of the same name"):
        read_dataset(str(yolo))


def test_coco_box_outside_its_image(yolo, tmp_path):
    coco = tmp_path / "coco"
    coco.mkdir()
    image = sorted((yolo / "images").iterdir())[0]
    shutil.copy(image, coco / image.name)
    (coco / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": image.name, "width": 200, "height": 200}],
        "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "bbox": [150, 10, 80, 20]}],
        "categories": [{"id": 1, "name": "tree"}]}))
    with pytest.raises(DataError, match=r"annotation 9 box \[150, 10, 80, 20\] lies outside image"):
        read_dataset(str(coco))


def test_missing_dataset_and_bad_archive(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(str(tmp_path / "nowhere"))
    bad = tmp_path / "images.zip"
    bad.write_bytes(b"PK not a zip")
    with pytest.raises(DataError, match="cannot be unpacked"):
        read_dataset(str(bad))
