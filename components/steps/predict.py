"""Batch scoring: a registered model over a table of any size, in chunks, to Parquet.

Rows stream through in chunks (Parquet row batches, CSV chunks), so peak memory follows the chunk
size, not the file. Each output row carries the prediction (or label, probability and one column per
class), the model's name and version, and the input row number. When the table holds the target,
the metrics evaluate reports are accumulated chunk by chunk (exact for regression; accuracy,
precision, recall, F1 and log loss from a running confusion matrix for classification).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..bundle import load_bundle
from ..errors import DataError
from ..storage import atomic_path, expand, is_remote, upload

log = logging.getLogger(__name__)


def fetch_model(uri: str, work: Path) -> tuple[Path, str | None, str]:
    """A bundle directory for ``models:/name@alias``, ``models:/name/3`` (checked against the registered
    digest; an alias pinned to one version; downloaded under ``work``) or a local bundle, and the
    registered name and version it is. A local copy of a registered version (a deploy's, a download)
    names them in MLflow's ``registered_model_meta``; a bundle never registered has no name, and its
    directory's name stands for the version."""
    import yaml

    from ..model_source import check_model_source, fetch_registered

    if uri.startswith("models:/"):
        local, name, version = fetch_registered(uri, "--model", work / "model")
        return local, name, version
    local = Path(check_model_source(uri, "--model"))
    registered = local / "registered_model_meta"
    if registered.is_file():
        found = yaml.safe_load(registered.read_text()) or {}
        if found.get("model_name") and found.get("model_version") is not None:
            return local, str(found["model_name"]), str(found["model_version"])
    return local, None, local.name


def chunks(paths: list[Path], rows: int) -> Iterator[pd.DataFrame]:
    """Row chunks read as load reads the table: the CSV's sniffed dialect, missing markers as missing."""
    from ..tasks.tabular import MISSING_MARKERS, mark_missing, markers_for, sniff_csv

    for path in paths:
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            parts = (batch.to_pandas() for batch in pq.ParquetFile(path).iter_batches(batch_size=rows))
        elif suffix in (".csv", ".tsv", ".txt"):
            d = sniff_csv(path)
            parts = pd.read_csv(path, chunksize=rows, sep=d["delimiter"], decimal=d["decimal"],
                                thousands=d["thousands"], encoding=d["encoding"], keep_default_na=False,
                                na_values=sorted(MISSING_MARKERS), skipinitialspace=True)
        elif suffix == ".jsonl":
            parts = pd.read_json(path, lines=True, chunksize=rows, convert_dates=False)
        else:
            raise DataError(f"{path}: batch scoring reads .parquet, .csv, .tsv or .jsonl; got {suffix!r}")
        for part in parts:
            yield mark_missing(part, markers_for(None, part.columns))


class RunningMetrics:
    """Test metrics accumulated over chunks, so labels never have to be held all at once."""

    def __init__(self, task: str, classes: list[str] | None):
        self.task, self.classes, self.n = task, classes, 0
        self.sums = np.zeros(5)  # regression: Σy, Σy², Σ|e|, Σe², n
        self.confusion = np.zeros((len(classes or []), len(classes or [])), dtype=np.int64)
        self.log_loss = 0.0

    def add(self, y_true, prediction: pd.DataFrame) -> None:
        if self.task == "regression":
            y = np.asarray(y_true, dtype=float)
            err = prediction["prediction"].to_numpy() - y
            self.sums += [y.sum(), (y ** 2).sum(), np.abs(err).sum(), (err ** 2).sum(), len(y)]
        else:
            index = {c: i for i, c in enumerate(self.classes)}
            truth = pd.Series(y_true).astype(str).map(index)
            known = truth.notna().to_numpy()
            t = truth[known].astype(int).to_numpy()
            p = prediction["label"].map(index).to_numpy()[known].astype(int)
            np.add.at(self.confusion, (t, p), 1)
            proba = prediction[[f"proba_{c}" for c in self.classes]].to_numpy()[known]
            self.log_loss += float(-np.log(np.clip(proba[np.arange(len(t)), t], 1e-12, 1)).sum())
        self.n += len(y_true)

    def result(self) -> dict[str, float]:
        if self.task == "regression":
            sy, syy, sae, sse, n = self.sums
            variance = syy - sy * sy / n
            return {"mae": sae / n, "mse": sse / n, "rmse": float(np.sqrt(sse / n)),
                    "r2": float(1 - sse / variance) if variance > 0 else float("nan")}
        c = self.confusion
        tp, predicted, actual = np.diag(c), c.sum(axis=0), c.sum(axis=1)
        precision = np.divide(tp, predicted, out=np.zeros(len(tp)), where=predicted > 0)
        recall = np.divide(tp, actual, out=np.zeros(len(tp)), where=actual > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(tp)),
                       where=(precision + recall) > 0)
        pick = (lambda v: float(v[1])) if len(tp) == 2 else (lambda v: float(v.mean()))  # binary / macro
        return {"accuracy": float(tp.sum() / c.sum()), "precision": pick(precision), "recall": pick(recall),
                "f1": pick(f1), "log_loss": self.log_loss / max(int(c.sum()), 1)}


def predict_batch(model_uri: str, data_uri: str, output_uri: str, chunk_rows: int = 50_000) -> dict:
    """Score every row of ``data_uri`` with the model and write Parquet to ``output_uri``."""
    with tempfile.TemporaryDirectory(prefix="batch-") as work:  # a downloaded model, a remote output's local copy
        return _predict_batch(model_uri, data_uri, output_uri, chunk_rows, Path(work))


def _predict_batch(model_uri: str, data_uri: str, output_uri: str, chunk_rows: int, work: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    model_dir, name, version = fetch_model(model_uri, work)
    bundle = load_bundle(model_dir)
    meta = bundle.meta
    if not bundle.family.table_records or meta.task == "detection":
        raise DataError(f"batch scoring takes models whose records are table rows (tabular, text); {model_uri} is "
                        f"{meta.family} {meta.task}")
    features, target = bundle.feature_names, meta.target
    metrics = RunningMetrics(meta.task, meta.classes)
    rows = 0
    local_out = work / "predictions.parquet" if is_remote(output_uri) else Path(output_uri)
    with atomic_path(local_out) as tmp:
        writer = None
        for chunk in chunks(expand(data_uri), chunk_rows):
            missing = [f for f in features if f not in chunk.columns]
            if missing:
                raise DataError(f"{data_uri}: columns {missing} that the model needs are missing; "
                                f"it reads {features}")
            out = bundle.predict_frame(chunk[features])
            out.insert(0, "row", np.arange(rows, rows + len(chunk)))
            out["model_name"], out["model_version"] = name or meta.model_name, str(version)
            if target in chunk.columns:
                labelled = chunk[target].notna().to_numpy()
                if labelled.any():
                    metrics.add(chunk[target][labelled].to_numpy(), out[labelled].reset_index(drop=True))
                out[target] = chunk[target].to_numpy()
            table = pa.Table.from_pandas(out, preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += len(chunk)
            log.info("scored %d rows", rows)
        if writer is None:
            raise DataError(f"{data_uri} holds no rows to score")
        writer.close()
    if is_remote(output_uri):
        upload(local_out, output_uri)
    result = {"rows": rows, "model_name": name or meta.model_name, "model_version": str(version), "output": output_uri,
              "metrics": metrics.result() if metrics.n else {}}
    log.info("batch scoring done: %s", result)
    return result
