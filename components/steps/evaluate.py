"""evaluate: score the bundle on the test split, draw the plots, and decide the gate."""
from __future__ import annotations

import json
import logging
import operator
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plots
from ..bundle import PAYLOAD, load_bundle, read_json
from ..model_card import bootstrap_ci, markdown_card, permutation_importance, to_html
from ..gate import per_class as per_class_name
from ..recipe import GATE_RE, Recipe
from ..storage import atomic_path
from ..tasks.instances import INSTANCE_TASKS, kind as instance_kind

log = logging.getLogger(__name__)
LOWER_IS_BETTER = {"mae", "mse", "rmse", "log_loss", "perplexity", "loss"}
COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    from sklearn import metrics as m

    mse = m.mean_squared_error(y_true, y_pred)
    return {"mae": m.mean_absolute_error(y_true, y_pred), "mse": mse, "rmse": float(np.sqrt(mse)),
            "r2": m.r2_score(y_true, y_pred)}


def classification_metrics(y_idx: np.ndarray, proba: np.ndarray, classes: list[str] | None = None) -> dict[str, float]:
    from sklearn import metrics as m

    k, pred = proba.shape[1], proba.argmax(axis=1)
    average = "binary" if k == 2 else "macro"
    onehot = np.eye(k)[y_idx]
    out = {"accuracy": m.accuracy_score(y_idx, pred),
           "precision": m.precision_score(y_idx, pred, average=average, zero_division=0),
           "recall": m.recall_score(y_idx, pred, average=average, zero_division=0),
           "f1": m.f1_score(y_idx, pred, average=average, zero_division=0),
           "log_loss": m.log_loss(y_idx, np.clip(proba, 1e-12, 1), labels=list(range(k)))}
    if k > 2:
        per_class = m.f1_score(y_idx, pred, labels=list(range(k)), average=None, zero_division=0)
        names = classes or [str(i) for i in range(k)]
        out.update({per_class_name("f1", names[i]): v for i, v in enumerate(per_class)})
    if k > 5:
        out["top5_accuracy"] = m.top_k_accuracy_score(y_idx, proba, k=5, labels=list(range(k)))
    present = onehot.sum(axis=0) > 0
    if present.all():  # AUCs are undefined when a class is missing from the test split
        out["roc_auc"] = m.roc_auc_score(y_idx, proba[:, 1]) if k == 2 else \
            m.roc_auc_score(y_idx, proba, multi_class="ovr", average="macro")
        out["pr_auc"] = m.average_precision_score(onehot[:, 1], proba[:, 1]) if k == 2 else \
            m.average_precision_score(onehot, proba, average="macro")
    return {key: float(v) for key, v in out.items()}


IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's mAP50-95


def match_detections(truth: list[dict], predictions: list[dict], classes: list[str]):
    """Per predicted box: true positive at each IoU threshold (greedy by IoU, same class, each true
    box matched once), its score and class; plus every true box's class. What AP needs."""
    from torchvision.ops import box_iou
    import torch

    tp, conf, pred_cls, target_cls = [], [], [], []
    index = {c: i for i, c in enumerate(classes)}
    for t, p in zip(truth, predictions):
        t_cls = np.array([index[c] for c in t["labels"]], dtype=int)
        p_cls = np.array([index[c] for c in p["labels"]], dtype=int)
        target_cls.append(t_cls)
        conf.append(np.asarray(p["scores"], dtype=float))
        pred_cls.append(p_cls)
        hits = np.zeros((len(p_cls), len(IOU_THRESHOLDS)), dtype=bool)
        if len(t_cls) and len(p_cls):
            iou = box_iou(torch.as_tensor(np.asarray(t["boxes"], dtype=np.float32).reshape(-1, 4)),
                          torch.as_tensor(np.asarray(p["boxes"], dtype=np.float32).reshape(-1, 4))).numpy()
            iou = iou * (t_cls[:, None] == p_cls[None, :])
            for k, threshold in enumerate(IOU_THRESHOLDS):
                gi, pj = np.nonzero(iou >= threshold)
                order = np.argsort(-iou[gi, pj])
                gi, pj = gi[order], pj[order]
                _, first_p = np.unique(pj, return_index=True)  # each prediction once, its best true box
                gi, pj = gi[first_p], pj[first_p]
                order = np.argsort(-iou[gi, pj])
                _, first_g = np.unique(gi[order], return_index=True)  # each true box once
                hits[pj[order][first_g], k] = True
        tp.append(hits)
    return (np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls), np.concatenate(target_cls))


def detection_metrics(truth: list[dict], predictions: list[dict], classes: list[str]) -> dict[str, float]:
    """mAP50, mAP50-95, precision and recall (overall and per class), with Ultralytics' AP."""
    from ..models import ap_per_class

    tp, conf, pred_cls, target_cls = match_detections(truth, predictions, classes)
    out = {"map50": 0.0, "map50_95": 0.0, "precision": 0.0, "recall": 0.0}
    if len(tp) and len(target_cls):
        _, _, p, r, _, ap, present = ap_per_class(tp, conf, pred_cls, target_cls, names=dict(enumerate(classes)))[:7]
        out = {"map50": ap[:, 0].mean(), "map50_95": ap.mean(), "precision": p.mean(), "recall": r.mean()}
        for i, c in enumerate(present):
            name = classes[int(c)]
            out.update({per_class_name("map50", name): ap[i, 0], per_class_name("precision", name): p[i],
                        per_class_name("recall", name): r[i]})
    return {k: float(v) for k, v in out.items()}


def generation_samples(bundle, texts: list[str], n: int = 3) -> list[dict]:
    """A few test texts' first words continued greedily: what the model writes, for the report."""
    prompts = [" ".join(t.split()[:3]) for t in texts[:n]]
    return bundle.predict([{"prompt": p, "max_new_tokens": 40, "temperature": 0.0} for p in prompts])


def check_gate(rules: list[str], metrics: dict[str, float]) -> tuple[str, list[dict]]:
    results = []
    for rule in rules:
        name, op, threshold = GATE_RE.match(rule).groups()
        if name not in metrics:
            raise KeyError(f"gate rule {rule!r} names metric {name!r}; this task reports {sorted(metrics)}")
        results.append({"rule": rule, "value": metrics[name], "passed": bool(COMPARE[op](metrics[name], float(threshold)))})
    return ("passed" if all(r["passed"] for r in results) else "failed"), results


def best_threshold(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The threshold τ on the positive-class probability that maximises F1, beside the default 0.5."""
    from sklearn.metrics import f1_score, precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    i = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    tau = float(thresholds[i]) if len(thresholds) else 0.5
    return {"best_threshold": tau, "f1_at_best_threshold": float(f1[i]),
            "f1_at_0.5": float(f1_score(y_true, scores >= 0.5, zero_division=0))}


def evaluate(recipe: Recipe, model_path: str, test_path: str, eval_dir: str, report_path: str | None = None,
             schema_path: str | None = None, data_report_path: str | None = None,
             card_path: str | None = None) -> dict:
    bundle = load_bundle(model_path)
    test = bundle.family.test_inputs(bundle.meta, pd.read_parquet(test_path))
    records, y_raw, time_index = test.records, test.truth, test.time_index
    if len(records) == 0:
        raise ValueError(f"the test split holds no complete window or row; nothing to evaluate in {test_path}")
    result: dict = {"n_test": len(records)}
    out = Path(eval_dir)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        images = []
        if bundle.meta.task == "generation":
            metrics = bundle.language_metrics(records)
            result["samples"] = generation_samples(bundle, records)
        elif bundle.meta.task in INSTANCE_TASKS:
            # segmentation, pose, obb: mask / pose / rotated-box mAP from the model's validator (Ultralytics')
            metrics = (bundle.validate(records, y_raw) if instance_kind(bundle.meta.task).validator
                       else detection_metrics(y_raw, bundle.predict(records), bundle.meta.classes))
            images.append(plots.detections(records[0], y_raw[0], bundle.predict(records[:1])[0],
                                           tmp / "sample_detections.png"))
        elif bundle.meta.task == "regression":
            y_true, y_pred = np.asarray(y_raw, dtype=float), bundle.predict(records)
            metrics = regression_metrics(y_true, y_pred)
            images += [plots.predicted_vs_actual(y_true, y_pred, tmp / "predicted_vs_actual.png"),
                       plots.residuals(y_true, y_pred, tmp / "residuals.png")]
            if time_index is not None:
                images.append(plots.over_time(time_index, y_true, y_pred, tmp / "predicted_over_time.png"))
        else:
            from sklearn.metrics import confusion_matrix, roc_curve

            classes = bundle.meta.classes
            y_idx = pd.Series(y_raw).astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
            proba = bundle.predict_proba(records)
            metrics = classification_metrics(y_idx, proba, classes)
            matrix = confusion_matrix(y_idx, proba.argmax(axis=1), labels=list(range(len(classes))))
            result["confusion_matrix"] = {"classes": classes, "matrix": matrix.tolist()}
            images.append(plots.confusion(matrix, classes, tmp / "confusion_matrix.png"))
            if "roc_auc" in metrics:
                onehot = np.eye(len(classes))[y_idx]
                images += [plots.curves(onehot, proba, classes, "roc", tmp / "roc_curve.png"),
                           plots.curves(onehot, proba, classes, "pr", tmp / "pr_curve.png")]
                if len(classes) == 2:
                    metrics.update(best_threshold(y_idx, proba[:, 1]))
                    fpr, tpr, thr = roc_curve(y_idx, proba[:, 1])
                    result["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                                     "thresholds": np.clip(thr, 0, 1).tolist()}
                    images.append(plots.score_histogram(y_idx, proba[:, 1], metrics["best_threshold"],
                                                        classes, tmp / "score_histogram.png"))
            if time_index is not None and len(classes) == 2:
                images.append(plots.over_time(time_index, y_idx, proba[:, 1], tmp / "predicted_over_time.png",
                                              ylabel=f"P({classes[1]})"))
        verdict, rules = check_gate(recipe.evaluate.gate, metrics)
        result.update(metrics=metrics, verdict=verdict, gate=rules, primary_metric=recipe.primary_metric)
        curve = Path(model_path) / PAYLOAD / "learning_curve.png"
        if curve.exists():
            images.append(Path(shutil.copy(curve, tmp / "learning_curve.png")))
        card = model_card(recipe, bundle, records, y_raw, metrics, rules, verdict, schema_path, data_report_path)
        (tmp / "model_card.md").write_text(card)
        (tmp / "model_card.html").write_text(
            to_html(card, {p.name: p for p in images if p.name == "learning_curve.png"}))
        (tmp / "evaluation.json").write_text(json.dumps(result, indent=2))
        gate_rows = {r["rule"]: f"{r['value']:.5g} → {'pass' if r['passed'] else 'FAIL'}" for r in rules}
        report = plots.html_report(f"Evaluation: {recipe.name} ({bundle.meta.model_name}) — gate {verdict}",
                                   {"test metrics": metrics, "gate": gate_rows or {"(no rules)": "passed"}}, images)
        (tmp / "report.html").write_text(report)
    if report_path:
        with atomic_path(report_path) as tmp:
            tmp.write_text(report)
    if card_path:
        with atomic_path(card_path) as tmp:
            tmp.write_text((out / "model_card.html").read_text())
    log.info("test metrics: %s; gate %s", {k: round(v, 5) for k, v in metrics.items()}, verdict)
    return result


def model_card(recipe, bundle, records, y_raw, metrics, rules, verdict, schema_path, data_report_path) -> str:
    """Metrics with bootstrap intervals, per-slice errors and permutation importance, in a model card."""
    meta, n = bundle.meta, len(records)
    schema = read_json(schema_path) if schema_path else {}
    data = {"name": recipe.name, "source": schema.get("source", "?"), "n_rows": schema.get("n_rows", "?"), "n_test": n}
    report = Path(data_report_path).read_text() if data_report_path and Path(data_report_path).is_file() else ""
    ci, importance, slices = {}, None, None
    if meta.task == "regression":
        y_true, y_pred = np.asarray(y_raw, dtype=float), bundle.predict(records)
        ci = bootstrap_ci(lambda i: regression_metrics(y_true[i], y_pred[i]), n)
        slices = _slices_by_target(y_true, y_pred)
        loss = lambda y, p: float(np.sqrt(np.mean((np.asarray(y, float) - p) ** 2)))  # noqa: E731
        predict = bundle.predict
    elif meta.task == "classification":
        index = {c: i for i, c in enumerate(meta.classes)}
        y_idx = pd.Series(y_raw).astype(str).map(index).to_numpy()
        proba = bundle.predict_proba(records)
        ci = bootstrap_ci(lambda i: {k: v for k, v in classification_metrics(y_idx[i], proba[i]).items()
                                     if "_class_" not in k}, n)
        loss = lambda y, p: float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1))))  # noqa: E731
        predict, y_true = bundle.predict_proba, y_idx
    if isinstance(records, pd.DataFrame) and meta.task in ("regression", "classification"):  # named columns
        sample = records.sample(min(n, 2000), random_state=0) if n > 2000 else records
        importance = permutation_importance(predict, sample, y_true[records.index.get_indexer(sample.index)], loss)
    return markdown_card(meta, metrics, ci, rules, verdict, data, report, importance, slices)


def _slices_by_target(y_true: np.ndarray, y_pred: np.ndarray, k: int = 4) -> dict:
    edges = np.unique(np.quantile(y_true, np.linspace(0, 1, k + 1)))
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (y_true >= lo) & ((y_true <= hi) if hi == edges[-1] else (y_true < hi))
        if inside.any():
            err = y_pred[inside] - y_true[inside]
            rows.append({"slice": f"[{lo:.4g}, {hi:.4g}]", "rows": int(inside.sum()),
                         "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
                         "bias": float(np.mean(err))})
    return {"by": "quartile of the true target", "metrics": ["mae", "rmse", "bias"], "rows": rows}
