"""timm, Hugging Face and Ultralytics specifics, on real images and texts the repo ships, tiny sizes
and one epoch (CPU). The contract every adapter keeps is checked in test_models.py."""
import numpy as np
import pandas as pd
import pytest

from components.models import build_adapter, get_entry, list_models, load_adapter
from components.recipe import RecipeError, TrainSpec
from components.tasks.images import decode, read_dataset
from tests.conftest import DATA

SPEC = TrainSpec(epochs=1, batch_size=16, learning_rate=1e-3)


@pytest.fixture(scope="module")
def digits():
    df, classes, _ = read_dataset(str(DATA / "digits"))
    df = df.groupby("label").head(6).reset_index(drop=True)  # 60 images
    images = [decode(b) for b in df["image"]]
    return images, df["label"].astype(int).to_numpy(), classes


@pytest.fixture(scope="module")
def trees():
    df, _, _ = read_dataset(str(DATA / "trees"))
    df = df.head(8)
    images = [decode(b) for b in df["image"]]
    targets = [{"boxes": np.asarray(list(b), dtype=np.float32).reshape(-1, 4), "classes": np.zeros(len(b), int)}
               for b in df["boxes"]]
    return images, targets


def test_catalog_has_the_promised_entries_and_filters(capsys):
    from components.models.__main__ import main

    counts = pd.Series([e.framework for e in list_models()]).value_counts()
    assert counts["timm"] >= 10 and counts["ultralytics"] >= 8 and counts["transformers"] >= 4, counts.to_dict()
    assert main(["list", "--task", "detection", "--tag", "fast"]) == 0
    out = capsys.readouterr().out
    assert "yolo11n " in out and "yolov8n " in out and "yolo11s" not in out and "resnet18" not in out
    assert "params" in out.splitlines()[0] and "2.6M" in out


@pytest.mark.slow
def test_catalog_cards_match_the_models():
    """The parameter counts in the catalog are the models' (classifier heads of the card's size)."""
    import timm

    for entry in list_models(framework="timm"):
        arch = entry.defaults["arch"]
        n = sum(p.numel() for p in timm.create_model(arch, pretrained=False).parameters()) / 1e6
        assert abs(n - entry.params_m) / entry.params_m < 0.05, (arch, n, entry.params_m)


@pytest.mark.slow
def test_ultralytics_cards_match_the_models(tmp_path, monkeypatch):
    """Every Ultralytics entry builds offline from its YAML with the task and size on its card."""
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path))
    from components.models.ultralytics_env import ultralytics_offline

    ultralytics_offline()
    from ultralytics import YOLO

    for entry in list_models(framework="ultralytics"):
        model = YOLO(f"{entry.defaults['arch']}.yaml", task=entry.defaults["yolo_task"])
        n = sum(p.numel() for p in model.model.parameters()) / 1e6
        assert model.task == entry.defaults["yolo_task"] and abs(n - entry.params_m) / entry.params_m < 0.05, \
            (entry.name, n, entry.params_m)


def test_any_timm_name_works_and_unknown_ones_are_named():
    assert get_entry("timm:resnet26").framework == "timm"  # not described in the catalog, still usable
    with pytest.raises(RecipeError, match="timm does not know 'resnet19'"):
        build_adapter("timm:resnet19", "classification", 3, family="image")


@pytest.mark.slow
def test_text_classifier_fine_tunes_the_shipped_minilm(tmp_path):
    df = pd.read_csv(DATA / "text" / "debian_packages.csv").groupby("label").head(10)
    texts, classes = df["text"].tolist(), sorted(df["label"].unique())
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    adapter = build_adapter("hf:minilm-l6", "classification", len(classes), {"max_length": 32}, "text")
    adapter.fit(texts, y, texts[:8], y[:8], TrainSpec(epochs=1, batch_size=8, learning_rate=5e-5), None)
    proba = adapter.predict_raw(texts[:5])
    assert proba.shape == (5, 4) and np.allclose(proba.sum(1), 1, atol=1e-4)
    adapter.save(tmp_path / "m")
    np.testing.assert_allclose(load_adapter("hf:minilm-l6", tmp_path / "m").predict_raw(texts[:5]), proba, atol=1e-5)


def test_pretrained_yolo_without_weights_offline_is_a_clear_error(tmp_path, trees, monkeypatch):
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    images, targets = trees
    adapter = build_adapter("yolo11s", "detection", 1, {"size": 64, "pretrained": True}, "image")
    with pytest.raises(RecipeError, match=r"yolo11s\.pt is not on this machine and downloads are off"):
        adapter.fit(images[:2], targets[:2], images[2:3], targets[2:3], SPEC, None)
