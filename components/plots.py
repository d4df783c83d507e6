"""Plots people would rather look at than numbers, saved as PNG and gathered into HTML."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(5.5, 4), dpi=100)


def _save(plt, fig, ax, path: Path, title: str, grid: bool = True) -> Path:
    ax.set_title(title)
    if grid:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def learning_curve(history: list[dict], path: Path) -> Path:
    """Train and validation loss per epoch; an ensemble's history (records with ``member``) gets a pair of
    lines per member, validation solid and train dashed in the member's colour."""
    plt, fig, ax = _figure()
    members = sorted({h["member"] for h in history if "member" in h}) or [None]
    for i, member in enumerate(members):
        rows = [h for h in history if h.get("member") == member]
        epochs = [h["epoch"] for h in rows]
        for key, style in (("train_loss", "--"), ("val_loss", "-")):
            if any(key in h for h in rows):
                label = key.replace("_", " ") + ("" if member is None else f", member {member}")
                ax.plot(epochs, [h.get(key, np.nan) for h in rows], marker="." if len(epochs) < 30 else None,
                        label=label, **({} if member is None else {"ls": style, "color": f"C{i % 10}"}))
    if members == [None]:
        best = min(history, key=lambda h: h["val_loss"])
        ax.axvline(best["epoch"], color="grey", ls="--", lw=1, label=f"best epoch {best['epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return _save(plt, fig, ax, path, "Learning curve")


def predicted_vs_actual(y_true, y_pred, path: Path) -> Path:
    plt, fig, ax = _figure()
    ax.scatter(y_true, y_pred, s=6, alpha=0.4)
    lo, hi = float(min(np.min(y_true), np.min(y_pred))), float(max(np.max(y_true), np.max(y_pred)))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    return _save(plt, fig, ax, path, "Predicted vs actual")


def residuals(y_true, y_pred, path: Path) -> Path:
    plt, fig, ax = _figure()
    ax.scatter(y_pred, np.asarray(y_true) - np.asarray(y_pred), s=6, alpha=0.4)
    ax.axhline(0, color="black", lw=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    return _save(plt, fig, ax, path, "Residuals")


def over_time(x, y_true, y_pred, path: Path, ylabel: str = "value") -> Path:
    plt, fig, ax = _figure()
    fig.set_size_inches(8, 3.5)
    ax.plot(x, y_true, lw=1, label="actual")
    ax.plot(x, y_pred, lw=1, label="predicted")
    ax.set_xlabel("time step")
    ax.set_ylabel(ylabel)
    ax.legend()
    return _save(plt, fig, ax, path, "Predicted vs actual over time")


def score_histogram(y_idx, scores, threshold: float, classes: list[str], path: Path) -> Path:
    plt, fig, ax = _figure()
    bins = np.linspace(0, 1, 31)
    for i, name in enumerate(classes):
        ax.hist(scores[np.asarray(y_idx) == i], bins=bins, alpha=0.6, label=f"true {name}")
    ax.axvline(0.5, color="grey", ls=":", lw=1, label="0.5")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"best F1 τ={threshold:.3f}")
    ax.set_xlabel(f"P({classes[1]})")
    ax.set_ylabel("count")
    ax.legend()
    return _save(plt, fig, ax, path, "Score histogram")


def confusion(matrix: np.ndarray, classes: list[str], path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt, fig, ax = _figure()
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, colorbar=False, xticks_rotation=45)
    return _save(plt, fig, ax, path, "Confusion matrix", grid=False)


def curves(y_onehot: np.ndarray, proba: np.ndarray, classes: list[str], kind: str, path: Path) -> Path:
    """ROC (kind='roc') or precision-recall (kind='pr'), one line per class (positive class if binary)."""
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    plt, fig, ax = _figure()
    display = RocCurveDisplay if kind == "roc" else PrecisionRecallDisplay
    columns = [1] if len(classes) == 2 else range(len(classes))
    for i in columns:
        display.from_predictions(y_onehot[:, i], proba[:, i], name=str(classes[i]), ax=ax)
    return _save(plt, fig, ax, path, "ROC curve" if kind == "roc" else "Precision-recall curve")


def detections(image: bytes, truth: dict, predicted: dict, path: Path, min_score: float = 0.25) -> Path:
    """One test image with its true boxes (green) and predicted boxes above ``min_score`` (red)."""
    import io

    from matplotlib.patches import Rectangle
    from PIL import Image

    plt, fig, ax = _figure()
    ax.imshow(Image.open(io.BytesIO(image)).convert("RGB"))
    for boxes, scores, color in ((truth["boxes"], None, "lime"), (predicted["boxes"], predicted["scores"], "red")):
        for n, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 4)):
            if scores is None or scores[n] >= min_score:
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, lw=1.2))
    ax.axis("off")
    return _save(plt, fig, ax, path, f"true (green) vs predicted ≥ {min_score} (red)", grid=False)


def html_report(title: str, tables: dict[str, dict], images: list[Path]) -> str:
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
             f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>"]
    for caption, rows in tables.items():
        parts.append(f"<h2>{html.escape(caption)}</h2><table border='1' cellpadding='4' style='border-collapse:collapse'>")
        parts += [f"<tr><th align='left'>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items()]
        parts.append("</table>")
    for image in images:
        data = base64.b64encode(Path(image).read_bytes()).decode()
        parts.append(f"<h2>{html.escape(Path(image).stem.replace('_', ' '))}</h2><img src='data:image/png;base64,{data}'>")
    return "\n".join(parts) + "</body></html>"


def _fmt(value) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)
