"""The model bundle: one MLflow pyfunc directory read by evaluate, register and serving alike.

Layout (``<dir>`` is what the train step's ``Model`` artifact and a registered version hold)::

    <dir>/MLmodel, python_model.pkl, code/components/...     (MLflow pyfunc wrapper)
    <dir>/artifacts/bundle/bundle.json                         BundleMeta: task, schema, classes, ...
    <dir>/artifacts/bundle/transform.joblib                    feature transform fitted on train
    <dir>/artifacts/bundle/model/                              the adapter's own files

``load_bundle(dir)`` needs no MLflow; ``mlflow.pyfunc.load_model(dir)`` predicts from raw
records too, through the same ``Bundle``.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from .tasks import family
from .tasks.instances import INSTANCE_TASKS, answers as instance_answers, encode as encode_instances

PAYLOAD = Path("artifacts") / "bundle"
COMPONENTS_DIR = Path(__file__).resolve().parent


class BundleMeta(BaseModel):
    """Typed metadata that rides with the weights."""
    task: str
    family: str = "tabular"
    target: str
    model_name: str
    framework: str
    params: dict[str, Any]
    features: list[dict[str, Any]]
    classes: list[str] | None = None
    target_mean: float = 0.0   # regression targets are standardised with train statistics
    target_std: float = 1.0
    train_metrics: dict[str, float] = Field(default_factory=dict)
    lineage: dict[str, str] = Field(default_factory=dict)
    train_options: dict[str, Any] = Field(default_factory=dict)  # the train section it was fitted with (tuned)
    series: dict[str, Any] | None = None  # time series: window length, label rule, channels
    image: dict[str, Any] | None = None   # images: layout; the adapter records its input size
    text: dict[str, Any] | None = None    # text: column name, max tokens
    textgen: dict[str, Any] | None = None  # text generation: column name, block size


class Bundle:
    def __init__(self, meta: BundleMeta, transform, adapter):
        self.meta, self.transform, self.adapter = meta, transform, adapter
        self.family = family(meta.family)

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.meta.features]

    def features(self, records) -> np.ndarray:
        """Raw records (table rows, or windows for time series) → what the adapter was trained on."""
        return self.family.model_inputs(self.meta, self.transform, records)

    def predict(self, records) -> np.ndarray | list[dict]:
        """Regression: values in target units. Classification: class names. Detection (and segmentation,
        pose, obb): per image ``{"boxes": [[x0, y0, x1, y1], ...] (pixels), "labels": [class], "scores": [...]}``
        plus the task's masks, keypoints or rotated boxes (``tasks/instances.py``).
        Generation: per prompt ``{"generated_text": ..., "tokens": n}``."""
        raw = self.adapter.predict_raw(self.features(records))
        if self.meta.task == "generation":
            return raw
        if self.meta.task in INSTANCE_TASKS:
            return self.detections(raw)
        if self.meta.task == "regression":
            offset = self.family.prediction_offset(self.meta, records)
            return raw * self.meta.target_std + self.meta.target_mean + offset
        return np.asarray(self.meta.classes, dtype=object)[raw.argmax(axis=1)]

    def detections(self, raw) -> list[dict]:
        """The adapter's raw instances as answers: boxes (xyxy, pixels, to 0.01 px), class names, scores, and
        the task's mask polygons, keypoints or rotated boxes."""
        return instance_answers(raw, self.meta.classes)

    def validate(self, records, truth: list[dict]) -> dict[str, float]:
        """Segmentation, pose, obb: the model's own validator (Ultralytics') on these images and labels."""
        return self.adapter.validate(self.features(records), encode_instances(truth, self.meta.classes),
                                     self.meta.classes)

    def language_metrics(self, texts: list[str]) -> dict[str, float]:
        """Generation: mean token negative log-likelihood of the texts (``loss``) and its exp (``perplexity``)."""
        return self.adapter.language_metrics(texts)

    def predict_proba(self, records) -> np.ndarray:
        if self.meta.task != "classification":
            raise TypeError(f"predict_proba needs a classification bundle, this one is {self.meta.task}")
        return self.adapter.predict_raw(self.features(records))

    def predict_frame(self, records) -> pd.DataFrame:
        """The table MLflow pyfunc and serving return: ``prediction`` or label + probabilities."""
        if isinstance(records, pd.DataFrame):  # what MLflow pyfunc hands over
            records = self.family.frame_records(self.meta, records)
        if self.meta.task == "regression":
            return pd.DataFrame({"prediction": self.predict(records)})
        if self.meta.task in INSTANCE_TASKS:
            return pd.DataFrame(self.predict(records))
        if self.meta.task == "generation":
            return pd.DataFrame(self.predict(records), columns=["generated_text", "tokens"])
        proba = self.predict_proba(records)
        classes = np.asarray(self.meta.classes, dtype=object)
        out = pd.DataFrame({"label": classes[proba.argmax(axis=1)], "probability": proba.max(axis=1)})
        for i, name in enumerate(self.meta.classes):
            out[f"proba_{name}"] = proba[:, i]
        return out

    # --- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path, input_example: pd.DataFrame, extra_files: dict[str, Path] | None = None) -> None:
        """Write the bundle as an MLflow pyfunc directory at ``path``, with signature and input example."""
        import joblib
        import mlflow.pyfunc
        from mlflow.models import infer_signature

        example = self.family.input_example(self.meta, input_example[:5])
        with tempfile.TemporaryDirectory() as tmp:
            payload = Path(tmp) / "bundle"
            payload.mkdir()
            (payload / "bundle.json").write_text(self.meta.model_dump_json(indent=2))
            joblib.dump(self.transform, payload / "transform.joblib")
            self.adapter.save(payload / "model")
            for name, src in (extra_files or {}).items():
                shutil.copy(src, payload / name)
            # Instance answers hold variable-length lists, which an MLflow signature cannot describe.
            signature = None if self.meta.task in INSTANCE_TASKS else infer_signature(example, self.predict_frame(example))
            mlflow.pyfunc.save_model(str(path), signature=signature, input_example=example, **pyfunc_spec(payload))


def _payload(path: str | Path) -> Path:
    path = Path(path)
    payload = path / PAYLOAD if (path / PAYLOAD).is_dir() else path
    if not (payload / "bundle.json").is_file():
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else "nothing (not a directory)"
        raise FileNotFoundError(f"{path} is not a model bundle: no {PAYLOAD / 'bundle.json'}; found {found}")
    return payload


def read_meta(path: str | Path) -> BundleMeta:
    """The bundle's metadata alone: no framework import (register and deploy need no torch)."""
    return BundleMeta.model_validate_json((_payload(path) / "bundle.json").read_text())


def load_bundle(path: str | Path) -> Bundle:
    import joblib

    from .models import load_adapter

    payload = _payload(path)
    meta = read_meta(payload)
    adapter = load_adapter(meta.model_name, payload / "model")
    return Bundle(meta, joblib.load(payload / "transform.joblib"), adapter)


def pyfunc_spec(path: str | Path) -> dict[str, Any]:
    """Arguments for ``mlflow.pyfunc.save_model`` / ``log_model``: one place knows them."""
    meta = read_meta(path)
    reqs = ["pandas", "numpy", "scikit-learn", "pydantic", "pyyaml", "joblib"]
    reqs += {"torch": ["torch"], "timm": ["torch", "torchvision", "timm", "pillow"],
             "ultralytics": ["torch", "torchvision", "ultralytics", "pillow"],
             "transformers": ["torch", "transformers", "pillow"]}.get(meta.framework, [])
    return {"python_model": sys.modules[__name__].BundlePyfunc(), "artifacts": {"bundle": str(_payload(path))},
            "code_paths": [str(COMPONENTS_DIR)], "pip_requirements": reqs}


def _pyfunc_class() -> type:
    """``mlflow.pyfunc.load_model(dir).predict(df)`` → ``Bundle.predict_frame(df)``.

    Built on first use: importing MLflow takes seconds, and evaluate and serving read bundles
    without it. ``components.bundle.BundlePyfunc`` (the name MLflow's pickle refers to) resolves here.
    """
    from mlflow.pyfunc import PythonModel

    class BundlePyfunc(PythonModel):
        def load_context(self, context) -> None:
            self.bundle = load_bundle(context.artifacts["bundle"])

        def __getstate__(self) -> dict:
            # MLflow pickles this object after predicting on the input example; the loaded bundle is
            # rebuilt from the artifacts by load_context, never pickled (a YOLO model holds locks).
            return {}

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return self.bundle.predict_frame(pd.DataFrame(model_input))

    BundlePyfunc.__qualname__ = BundlePyfunc.__name__  # pickled by reference, as a module attribute
    return BundlePyfunc


def __getattr__(name: str):
    if name == "BundlePyfunc":
        globals()[name] = _pyfunc_class()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
