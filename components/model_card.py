"""The model card: what a person reads before trusting a model (Mitchell et al. 2019, as the Hugging
Face and Google model cards lay it out). Evaluate writes it as Markdown and self-contained HTML; register
adds the comparison with the champion and logs both to MLflow."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Callable

import numpy as np

CHAMPION_SECTION = "## Champion comparison"
PENDING = "Decided when the version is registered (register step)."


def bootstrap_ci(score: Callable[[np.ndarray], dict[str, float]], n: int, resamples: int = 200,
                 seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of every metric ``score(indices)`` returns, over resampled test rows."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        try:
            for name, value in score(rng.integers(0, n, n)).items():
                draws.setdefault(name, []).append(value)
        except ValueError:  # a resample without some class: AUCs undefined for it
            continue
    return {k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
            for k, v in draws.items() if len(v) >= resamples // 2}


def permutation_importance(predict: Callable, X, y, loss: Callable, repeats: int = 5, seed: int = 0):
    """(feature, mean increase of the loss, std) when that column is shuffled: sklearn.inspection's method."""
    from sklearn.inspection import permutation_importance as sk_importance

    class Fitted:  # sklearn's scorer protocol over an already fitted bundle
        def fit(self, *_):
            return self

        def predict(self, X_):
            return predict(X_)

    result = sk_importance(Fitted(), X, y, scoring=lambda est, X_, y_: -loss(y_, est.predict(X_)),
                           n_repeats=repeats, random_state=seed)
    rows = zip(X.columns, result.importances_mean, result.importances_std)
    return sorted(((str(c), float(m), float(s)) for c, m, s in rows), key=lambda r: -r[1])


def markdown_card(meta, metrics: dict, ci: dict, gate: list[dict], verdict: str, data: dict, data_report: str,
                  importance: list | None, slices: dict | None) -> str:
    train = meta.train_options or {}
    members = int(train.get("ensemble") or 1)
    ensemble = (f", an ensemble of {members} networks (seeds {train.get('seed', 0)}–{train.get('seed', 0) + members - 1}"
                "), predictions averaged" if members > 1 else "")
    lines = [f"# Model card: {data.get('name', meta.target)} ({meta.model_name})", "",
             "## Model", "", f"- model: `{meta.model_name}` ({meta.framework}){ensemble}, task **{meta.task}**, "
             f"family {meta.family}, target `{meta.target}`", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(meta.params.items())]
    lines += ["", "Training: " + ", ".join(f"{k} {v:.5g}" for k, v in meta.train_metrics.items()), "",
              "![learning curve](learning_curve.png)", "", "## Data", "",
              f"- source: `{data.get('source', '?')}` (content hash `{meta.lineage.get('data_hash', '?')}`)",
              f"- rows after cleaning: {data.get('n_rows', '?')}, features: {len(meta.features)}"
              + (f", classes: {', '.join(meta.classes)}" if meta.classes else ""), "",
              "<details><summary>data report</summary>", "", _demote(data_report), "", "</details>", "",
              "## Test metrics", "", f"Bootstrap 95% intervals over {data.get('n_test', '?')} test rows.", "",
              "| metric | value | 95% interval |", "|---|---|---|"]
    for name, value in metrics.items():
        if "_class_" not in name:
            lo, hi = ci.get(name, (np.nan, np.nan))
            lines.append(f"| {name} | {value:.4g} | " + (f"{lo:.4g} – {hi:.4g} |" if np.isfinite(lo) else "– |"))
    per_class = {k: v for k, v in metrics.items() if "_class_" in k}
    if per_class:
        lines += ["", "## Per-class metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in per_class.items()]
    if slices:
        lines += ["", "## Per-slice metrics", "", f"Test rows grouped by {slices['by']}.", "",
                  "| slice | rows | " + " | ".join(slices["metrics"]) + " |", "|---|---|" + "---|" * len(slices["metrics"])]
        lines += [f"| {s['slice']} | {s['rows']} | " + " | ".join(f"{s[m]:.4g}" for m in slices["metrics"]) + " |"
                  for s in slices["rows"]]
    if importance:
        lines += ["", "## Feature importance", "", "Permutation importance on the test split: how much the "
                  "loss grows when one column is shuffled (mean ± std over 5 shuffles).", "",
                  "| feature | importance | std |", "|---|---|---|"]
        lines += [f"| {f} | {m:.4g} | {s:.2g} |" for f, m, s in importance]
    lines += ["", "## Gate", "", f"Verdict: **{verdict}**", ""]
    lines += [f"- `{r['rule']}`: {r['value']:.4g} → {'pass' if r['passed'] else 'FAIL'}" for r in gate] or ["- no rules"]
    lines += ["", CHAMPION_SECTION, "", PENDING, "", "## Intended use and limits", "", *_limits(meta, data)]
    return "\n".join(lines) + "\n"


def _limits(meta, data: dict) -> list[str]:
    numeric = [f for f in meta.features if f.get("kind") == "numeric" and f.get("stats")]
    ranges = ", ".join(f"{f['name']} in [{f['stats']['min']:.4g}, {f['stats']['max']:.4g}]" for f in numeric[:8])
    return [f"- Intended for {meta.task} of `{meta.target}` on data drawn like `{data.get('source', '?')}`.",
            "- Inputs outside the training ranges are extrapolation" + (f" ({ranges})." if ranges else "."),
            "- Categories unseen in training are encoded as unknown; the metrics above do not cover them.",
            "- The intervals describe sampling noise of this test split only, not a shift in the data."]


def _demote(markdown: str) -> str:
    """Headings of an embedded document one level down, so the card keeps its outline."""
    return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", markdown, flags=re.M)


def with_champion(card: str, text: str) -> str:
    return card.replace(f"{CHAMPION_SECTION}\n\n{PENDING}", f"{CHAMPION_SECTION}\n\n{text}")


def to_html(card: str, images: dict[str, Path]) -> str:
    """Self-contained HTML: images inlined, tables rendered (python-markdown)."""
    import markdown

    for name, path in images.items():
        if Path(path).is_file():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            card = card.replace(f"]({name})", f"](data:image/png;base64,{data})")
    body = markdown.markdown(card, extensions=["tables", "md_in_html"])
    title = html.escape(card.splitlines()[0].lstrip("# "))
    return (f"<html><head><meta charset='utf-8'><title>{title}</title><style>body{{font-family:sans-serif;"
            "max-width:60em;margin:auto}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;"
            f"padding:3px 8px}}</style></head><body>{body}</body></html>")
