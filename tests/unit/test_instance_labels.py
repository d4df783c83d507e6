"""Segmentation, pose and oriented boxes: labels read and checked (YOLO, COCO), written back for
Ultralytics, and answered; no model is trained here."""
import json
import shutil

import numpy as np
import pytest

from components.check import metric_problem
from components.errors import DataError
from components.models.yolo import _write_yolo, platform_metrics
from components.tasks import instances
from components.tasks.images import read_dataset, read_dataset_and_spec
from tests.conftest import DATA

SHIPPED = {"segmentation": "shapes-seg", "pose": "shapes-pose", "obb": "shapes-obb"}


def copy(tmp_path, task):
    root = tmp_path / SHIPPED[task]
    shutil.copytree(DATA / SHIPPED[task], root)
    return root


@pytest.mark.parametrize("task,column,values", [("segmentation", "polygons", None), ("pose", "keypoints", 12),
                                                ("obb", "corners", 8)])
def test_shipped_data_reads_into_the_canonical_table(task, column, values):
    df, classes, layout = read_dataset(str(DATA / SHIPPED[task]), "auto", task)
    assert layout == "yolo" and len(df) == 96 and column in df.columns
    for boxes, labels, extra in zip(df["boxes"], df["box_labels"], df[column]):
        assert len(boxes) == len(labels) == len(extra) >= 1 and set(labels) <= set(classes)
        for box, points in zip(boxes, extra):
            step = 3 if task == "pose" else 2
            xy = np.asarray(points).reshape(-1, step)[:, :2]
            assert values is None or len(points) == values
            # every point lies in the image (pixels) and inside its instance's box
            assert xy.min() >= 0 and xy.max() <= 96
            assert (xy >= np.asarray(box[:2]) - 0.01).all() and (xy <= np.asarray(box[2:]) + 0.01).all()


@pytest.mark.parametrize("task,line,message", [
    ("segmentation", "0 0.1 0.1 0.5 0.1", r"line 2: 5 values; expected 'class x1 y1 x2 y2 \.\.\. xn yn"),
    ("segmentation", "0 0.1 0.1 0.5 0.1 0.3", r"line 2: 6 values"),
    ("segmentation", "1 0.1 0.1 0.5 0.1 0.3 1.2", r"line 2: coordinate 1\.2 lies outside the image"),
    ("segmentation", "0 0.1 0.1 0.5 x 0.3 0.4", r"line 2: .* not a number"),
    ("segmentation", "5 0.1 0.1 0.5 0.1 0.3 0.4", r"line 2: class index 5 is out of range; expected 0\.\.2"),
    ("pose", "0 0.5 0.5 0.2 0.2 0.4 0.4 2 0.6 0.4 2", r"line 2: 11 values; .* = 17 values for kpt_shape \[4, 3\]"),
    ("pose", "0 0.5 0.5 0.2 0.2" + " 0.5 0.5 3" * 4, r"line 2: keypoint visibility .*expected 0 .*1 .*or 2"),
    ("pose", "0 0.5 0.5 0.2 0.2" + " 0.5 -0.5 2" * 4, r"line 2: coordinate -0\.5 lies outside the image"),
    ("obb", "0 0.1 0.1 0.5 0.1 0.5 0.3", r"line 2: 7 values; expected 'class x1 y1 x2 y2 x3 y3 x4 y4"),
    ("obb", "0 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1", r"line 2: the instance has no area"),
])
def test_a_bad_label_line_is_named_with_what_was_expected(tmp_path, task, line, message):
    root = copy(tmp_path, task)
    label = root / "labels" / "007.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(DataError, match=message) as err:
        read_dataset(str(root), "yolo", task)
    assert str(label) in str(err.value)


def test_pose_needs_kpt_shape(tmp_path):
    root = copy(tmp_path, "pose")
    (root / "data.yaml").write_text("names: [card]\n")
    with pytest.raises(DataError, match=r"data\.yaml: kpt_shape is None; task 'pose' expects kpt_shape: \[K, 3\]"):
        read_dataset(str(root), "yolo", "pose")


def test_pose_without_visibility_reads_every_point_as_visible(tmp_path):
    root = copy(tmp_path, "pose")
    (root / "data.yaml").write_text("kpt_shape: [4, 2]\nnames: [card]\n")
    for label in (root / "labels").glob("*.txt"):
        rows = [np.array(line.split(), dtype=float) for line in label.read_text().splitlines() if line.strip()]
        label.write_text("\n".join(" ".join(map(str, np.delete(r, [7, 10, 13, 16]))) for r in rows))
    df, _, _ = read_dataset(str(root), "yolo", "pose")
    kpts = np.asarray(df["keypoints"][0][0]).reshape(4, 3)
    assert (kpts[:, 2] == 2).all()


def test_pose_flip_idx_reaches_the_data_set_ultralytics_trains_from(tmp_path):
    """data.yaml's flip_idx travels load -> schema -> fit_inputs -> the adapter's data.yaml, and
    Ultralytics then flips left-right with it (without it, it turns flips off)."""
    from components.models.yolo import ultralytics_offline
    from components.recipe import Recipe
    from components.tasks import family_for
    from components.tasks.images import decode

    recipe = Recipe.from_file(DATA.parent / "pipelines" / "recipes" / "shapes-pose.yaml", [f"data.uri={DATA / 'shapes-pose'}"])
    family = family_for(recipe)
    raw, info = family.read(recipe)
    df, schema = family.clean(raw, recipe, info)
    assert info["flip_idx"] == schema["flip_idx"] == [1, 0, 3, 2]
    inputs = family.fit_inputs(recipe, {**schema, "layout": "yolo"}, df.head(4), df.iloc[4:6], "onehot")
    assert inputs.fit_params == {"flip_idx": [1, 0, 3, 2]} and inputs.meta["image"]["flip_idx"] == [1, 0, 3, 2]

    ultralytics_offline()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    truth = instances.encode(instances.targets("pose", df.head(4)), info["classes"])
    images = [decode(b) for b in df.head(4)["image"]]

    def horizontal_flip(flip_idx):
        path = _write_yolo(tmp_path / str(flip_idx), images, truth, images, truth, info["classes"], flip_idx)
        data = check_det_dataset(str(path))
        dataset = build_yolo_dataset(get_cfg(overrides={"task": "pose", "imgsz": 96}), data["train"], 4, data)
        return [(t.p, t.flip_idx) for t in dataset.transforms.transforms if type(t).__name__ == "RandomFlip"][-1]

    assert horizontal_flip([1, 0, 3, 2]) == (0.5, [1, 0, 3, 2])
    assert horizontal_flip(None)[0] == 0.0  # what training did before: no flips at all


@pytest.mark.parametrize("flip_idx", ["[0, 1, 2]", "[0, 1, 2, 2]", "[0, 1, 2, 4]", "[0, 1.0, 2, 3]", "'0 1 2 3'",
                                      "[1, '0', 3, 2]", "[1, 2, 3, 0]"])
def test_a_bad_flip_idx_is_refused_naming_what_it_should_be(tmp_path, flip_idx):
    root = copy(tmp_path, "pose")
    (root / "data.yaml").write_text(f"kpt_shape: [4, 3]\nflip_idx: {flip_idx}\nnames: [card]\n")
    with pytest.raises(DataError, match=r"data\.yaml: flip_idx is .*; expected for each of the 4 keypoints the index "
                                        r"of the keypoint it becomes .*a reordering of 0\.\.3"):
        read_dataset(str(root), "yolo", "pose")


def test_coco_keypoint_names_say_how_a_flip_moves_them(tmp_path):
    person = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle"]
    assert instances.flip_from_names(person) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert instances.flip_from_names(["Left Paw", "Right Paw", "tail"]) == [1, 0, 2]
    assert instances.flip_from_names(["a", "b", "c", "d"]) is None  # the names do not tell: no flips
    assert instances.flip_from_names(["left_eye", "nose"]) is None  # a left without its right
    assert instances.flip_from_names(["leftover", "right"]) is None  # words, not parts of words
    df, classes, _ = read_dataset(str(DATA / "shapes-pose"), "auto", "pose")
    spec = to_coco(df.head(2), classes, tmp_path / "coco", "pose")
    spec["categories"][0]["keypoints"] = ["top_left", "top_right", "bottom_right", "bottom_left"]
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(spec))
    assert read_dataset_and_spec(str(tmp_path / "coco"), "coco", "pose")[3]["flip_idx"] == [1, 0, 3, 2]


def test_a_detection_line_with_extra_values_is_refused(tmp_path):
    root = copy(tmp_path, "obb")
    with pytest.raises(DataError, match=r"line 1: 9 values; expected 'class cx cy w h'"):
        read_dataset(str(root), "yolo", "detection")


def to_coco(df, classes, root, task):
    """The canonical table as COCO JSON (pixels); segmentation polygons, pose keypoints."""
    (root / "images").mkdir(parents=True)
    spec = {"images": [], "annotations": [],
            "categories": [{"id": 10 + i, "name": c, **({"keypoints": list("abcd")} if task == "pose" else {})}
                           for i, c in enumerate(classes)]}
    column = instances.kind(task).column
    for i, row in df.iterrows():
        name = row["name"].split("/")[-1]
        (root / "images" / name).write_bytes(row["image"])
        spec["images"].append({"id": i, "file_name": name, "width": 96, "height": 96})
        for j, (box, label, extra) in enumerate(zip(row["boxes"], row["box_labels"], row[column])):
            x0, y0, x1, y1 = box
            ann = {"id": i * 100 + j, "image_id": i, "category_id": 10 + classes.index(label),
                   "bbox": [x0, y0, x1 - x0, y1 - y0]}
            ann["segmentation" if task == "segmentation" else "keypoints"] = \
                [list(extra)] if task == "segmentation" else list(extra)
            spec["annotations"].append(ann)
    (root / "instances.json").write_text(json.dumps(spec))
    return spec


@pytest.mark.parametrize("task", ["segmentation", "pose"])
def test_coco_gives_the_same_instances_as_yolo(tmp_path, task):
    df, classes, _ = read_dataset(str(DATA / SHIPPED[task]), "auto", task)
    df = df.head(6)
    to_coco(df, classes, tmp_path / "coco", task)
    got, got_classes, layout = read_dataset(str(tmp_path / "coco"), "auto", task)
    column = instances.kind(task).column
    assert layout == "coco" and got_classes == classes and list(got["box_labels"]) == list(df["box_labels"])
    for a, b in zip(got[column], df[column]):
        for p, q in zip(a, b):
            np.testing.assert_allclose(p, q, atol=1e-6)
    for a, b in zip(got["boxes"], df["boxes"]):
        np.testing.assert_allclose(np.asarray(list(a)), np.asarray(list(b)), atol=1e-3)


def test_coco_segmentation_in_parts_becomes_one_polygon_and_rle_is_refused(tmp_path):
    df, classes, _ = read_dataset(str(DATA / "shapes-seg"), "auto", "segmentation")
    spec = to_coco(df.head(1), classes, tmp_path / "coco", "segmentation")
    ann = spec["annotations"][0]
    ann["segmentation"] = [[10, 10, 20, 10, 20, 20, 10, 20], [40, 40, 50, 40, 45, 50]]  # a square and a triangle
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(spec))
    got, _, _ = read_dataset(str(tmp_path / "coco"), "coco", "segmentation")
    polygon = np.asarray(got["polygons"][0][0]).reshape(-1, 2)
    assert {tuple(p) for p in polygon} == {(10, 10), (20, 10), (20, 20), (10, 20), (40, 40), (50, 40), (45, 50)}
    np.testing.assert_allclose(got["boxes"][0][0], [10, 10, 50, 50])  # the box spans both parts
    ann["segmentation"] = {"counts": [0, 10, 86], "size": [96, 96]}
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match=r"annotation 0: segmentation is a run-length mask but the annotation is not "
                                        r"a crowd \(iscrowd: 0\); expected polygons"):
        read_dataset(str(tmp_path / "coco"), "coco", "segmentation")
    # a crowd (iscrowd: 1, run-length) is left out, as COCO's evaluation does; the image stays, without it
    spec["annotations"].append({**ann, "id": 1, "iscrowd": 1})
    ann["segmentation"] = [[10, 10, 20, 10, 20, 20, 10, 20]]
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(spec))
    got, _, _ = read_dataset(str(tmp_path / "coco"), "coco", "segmentation")
    kept = [a for a in spec["annotations"] if not a.get("iscrowd")]
    assert len(got) == 1 and len(got["polygons"][0]) == len(got["boxes"][0]) == len(kept) == len(spec["annotations"]) - 1
    ann["segmentation"] = [[10, 10, 200, 10, 20, 20]]
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match=r"annotation 0: a point of its polygons lies outside image 000\.jpg"):
        read_dataset(str(tmp_path / "coco"), "coco", "segmentation")


def test_coco_pose_checks_the_number_of_keypoint_values(tmp_path):
    df, classes, _ = read_dataset(str(DATA / "shapes-pose"), "auto", "pose")
    spec = to_coco(df.head(2), classes, tmp_path / "coco", "pose")
    spec["annotations"][0]["keypoints"] = spec["annotations"][0]["keypoints"][:-3]
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match=r"annotation 0 keypoints: 9 values; expected 12 values"):
        read_dataset(str(tmp_path / "coco"), "coco", "pose")


@pytest.mark.parametrize("task", ["segmentation", "pose", "obb"])
def test_labels_written_for_ultralytics_read_back_the_same(tmp_path, task):
    """The adapter writes YOLO lines from the canonical targets; load reads them back unchanged."""
    from components.tasks.images import decode

    df, classes, _ = read_dataset(str(DATA / SHIPPED[task]), "auto", task)
    df = df.head(5)
    truth = instances.encode(instances.targets(task, df), classes)
    images = [decode(b) for b in df["image"]]
    spec = json.loads(_write_yolo(tmp_path / "yolo", images, truth, [], [], classes).read_text())
    assert spec.get("kpt_shape") == ([4, 3] if task == "pose" else None)
    (tmp_path / "yolo" / "train" / "data.yaml").write_text(json.dumps({**spec, "names": classes}))
    back, _, _ = read_dataset(str(tmp_path / "yolo" / "train"), "yolo", task)
    column = instances.kind(task).column
    for a, b in zip(back[column], df[column]):
        for p, q in zip(a, b):
            np.testing.assert_allclose(p, q, atol=1e-3)
    assert list(back["box_labels"]) == list(df["box_labels"])


def test_answers_carry_masks_keypoints_and_rotated_boxes_as_json():
    raw = [{"boxes": np.array([[1.234, 2, 30.5, 40]]), "scores": np.array([0.912345678]), "classes": np.array([1]),
            "masks": [np.array([[1.23456, 2.0], [30.5, 2.0], [30.5, 40.0]], dtype=np.float32)],
            "keypoints": [np.array([[5.55555, 6.0, 0.98765]] * 4)],
            "rotated_boxes": [np.array([16.0, 21.0, 29.0, 38.0, 0.7853982])],
            "corners": [np.array([[1, 2], [3, 4], [5, 6], [7, 8]], dtype=np.float32)]},
           {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int), "masks": []}]
    out = instances.answers(raw, ["bar", "block"])
    assert json.loads(json.dumps(out)) == out
    first = out[0]
    assert first["boxes"] == [[1.23, 2.0, 30.5, 40.0]] and first["labels"] == ["block"] and first["scores"] == [0.91235]
    assert first["masks"] == [[[1.235, 2.0], [30.5, 2.0], [30.5, 40.0]]]
    assert first["keypoints"][0][0] == [5.556, 6.0, 0.988] and len(first["keypoints"][0]) == 4
    assert first["rotated_boxes"] == [[16.0, 21.0, 29.0, 38.0, 0.785]] and len(first["corners"][0]) == 4
    assert out[1] == {"boxes": [], "labels": [], "scores": [], "masks": []}


def test_ultralytics_metric_names_become_the_platforms():
    got = platform_metrics({"metrics/precision(B)": 0.5, "metrics/mAP50-95(M)": 0.25, "metrics/mAP50(P)": 0.75,
                            "metrics/recall(P)": 1, "val/box_loss": 3.0, "fitness": 0.1})
    assert got == {"precision": 0.5, "mask_map50_95": 0.25, "pose_map50": 0.75, "pose_recall": 1.0}


def test_gates_name_the_metrics_each_task_reports():
    assert metric_problem("segmentation", "mask_map50", "evaluate.gate") is None
    assert metric_problem("pose", "pose_map50_95", "evaluate.gate") is None
    assert "did you mean 'map50'" in metric_problem("obb", "mask_map50", "evaluate.gate")
    # per class (evaluate reports them from Ultralytics' validator), masks and keypoints included
    assert metric_problem("segmentation", "mask_map50_class_circle", "evaluate.gate") is None
    assert metric_problem("pose", "pose_recall_class_card", "evaluate.gate") is None
    assert metric_problem("obb", "map50_class_bar", "evaluate.gate") is None
    assert "reports no metric" in metric_problem("obb", "mask_map50_95_class_bar", "evaluate.gate")
    # a per-class metric of another task is refused before training, naming what this task reports
    assert "and per class map50_class_<name>, precision_class_<name>, recall_class_<name>, mask_map50_class_<name>" \
        in metric_problem("segmentation", "pose_map50_class_circle", "evaluate.gate")
    assert "reports no metric 'f1_class_bar'" in metric_problem("detection", "f1_class_bar", "evaluate.gate")
    assert metric_problem("classification", "f1_class_Traffic-light.2", "evaluate.gate") is None
    from components.recipe import Recipe
    from tests.conftest import ROOT

    for task, name in (("segmentation", "seg"), ("pose", "pose"), ("obb", "obb")):
        recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / f"shapes-{name}.yaml", ["evaluate.primary_metric=null"])
        assert recipe.task == task and recipe.primary_metric == instances.kind(task).primary_metric
