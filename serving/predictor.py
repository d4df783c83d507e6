"""KServe predictor over a model bundle: V1 and V2 (Open Inference Protocol) REST.

V1  ``POST /v1/models/<m>:predict``  ``{"instances": [{"col": value, ...}, ...]}`` (or lists in
    feature order; for time series one window [C][L] per instance) → ``{"predictions": [...]}``.
V2  ``POST /v2/models/<m>/infer``    one input per feature column, each of shape [n]; for time
    series one input of shape [n, C, L].
KServe's stages: ``preprocess`` decodes (the bundle's task family reads the records, see
``components/tasks``), ``predict`` makes one model call (rows of concurrent requests stacked by a
micro-batcher, or images and texts one request at a time through ``media.py``), ``postprocess``
encodes the V1 or V2 answer with the model version and the time each stage took.
Bad requests raise ``InvalidInput`` (HTTP 400) naming what was wrong; the server keeps serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InferenceError, InvalidInput

from components.bundle import Bundle, load_bundle
from components.tasks.instances import INSTANCE_TASKS
from components.tasks.tabular import unseen_categories
from components.errors import InvalidInputError, RequestTooLarge
from components.model_source import verify_bundle

from . import media, metrics
from .batching import MicroBatcher

log = logging.getLogger(__name__)
MAX_INSTANCES = 100_000


@dataclass
class Request:
    """One request between KServe's stages."""
    v2: InferRequest | None  # the V2 request (its id answers), None for V1
    records: Any             # as the family decoded them
    started: float
    decoded: float
    predicted: float = 0.0
    answers: Any = None      # the bundle's frame (rows) or the media answers
    unseen: dict = field(default_factory=dict)
    timings_ms: dict = field(default_factory=dict)


class PredictionTimeout(RuntimeError):
    """The model did not answer within the request timeout (HTTP 504)."""


class BundlePredictor(Model):
    def __init__(self, name: str, model_dir: str, max_batch_rows: int = 256, max_wait_ms: float = 0.0,
                 timeout_s: float = 30.0, expected_digest: str = "", version: str = ""):
        super().__init__(name)
        self.model_dir, self.expected_digest, self.version = model_dir, expected_digest, version
        self.max_batch_rows, self.max_wait_ms, self.timeout_s = max_batch_rows, max_wait_ms, timeout_s
        self.bundle: Bundle | None = None
        self.batcher: MicroBatcher | None = None   # families whose rows stack: concurrent requests, one call
        self.media: media.MediaModel | None = None  # the others: one request at a time, decoded in a thread

    def load(self) -> bool:
        if self.expected_digest:  # checked here, right before anything in the bundle is unpickled
            verify_bundle(self.model_dir, self.expected_digest, f"model {self.name}")
        self.bundle = load_bundle(self.model_dir)
        self.family = self.bundle.family
        # Warm up with a typical record so the first request pays no lazy initialisation.
        warm = self.family.warmup_records(self.bundle)
        self.bundle.predict_frame(warm)
        if self.family.stacks_rows:
            self.batcher = MicroBatcher(self.bundle.predict_frame, _join, _split, self.max_batch_rows,
                                        self.max_wait_ms, on_batch=self._observe_batch)
            self.batcher.calibrate(warm, len(warm))  # what a batch costs: on the event loop or in a thread
        else:
            self.media = media.MediaModel(self.bundle, self.timeout_s)
        self.known_categories = self.family.category_levels(self.bundle.transform)
        self.ready = True
        log.info("loaded %s %s bundle (%s) from %s", self.bundle.meta.family, self.bundle.meta.task,
                 self.bundle.meta.model_name, self.model_dir)
        return self.ready

    def _observe_batch(self, n_requests: int, n_rows: int) -> None:
        metrics.BATCH_REQUESTS.labels(self.name).observe(n_requests)
        metrics.BATCH_ROWS.labels(self.name).observe(n_rows)

    # --- request decoding: the family reads records from V1 instances or V2 inputs ---------------
    def _records(self, payload: Any):
        meta = self.bundle.meta
        if isinstance(payload, InferRequest):
            if not payload.inputs:
                raise InvalidInput(f"expected inputs {[i['name'] for i in self.get_input_types()]}; got no inputs")
            return self.family.v2_request_records(meta, payload)
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput('expected a JSON object with an "instances" list, e.g. {"instances": [...]}; '
                               f'the model takes {self.get_input_types()}')
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('"instances" must be a non-empty list of records')
        if len(instances) > MAX_INSTANCES:
            raise InvalidInput(f'"instances" holds {len(instances)} records; at most {MAX_INSTANCES} per request')
        return self.family.v1_records(meta, instances)

    def _no_finite_answer(self, records, row: int) -> str:
        """Which values of a record that gave NaN/inf lie outside what the model was trained on."""
        where = []
        if isinstance(records, pd.DataFrame):
            for f in self.bundle.meta.features:
                s = f.get("stats", {})
                if f["kind"] == "numeric" and f["name"] in records.columns and "min" in s and "max" in s:
                    value = pd.to_numeric(records[f["name"]].iloc[row], errors="coerce")
                    if pd.notna(value) and not s["min"] <= value <= s["max"]:
                        where.append(f"{f['name']}={value:.4g} (trained on {s['min']:.4g} to {s['max']:.4g})")
        return (f"instance {row}: the model gives no finite answer for these values"
                + (f"; out of the training range: {', '.join(where)}" if where else "; values are far outside the "
                   "training range"))

    # --- prediction ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self):
        """One mapping from what went wrong to the HTTP answer and the error metric, for every path."""
        try:
            yield
        except (InvalidInput, RequestTooLarge):
            metrics.ERRORS.labels(self.name, "invalid_input").inc()
            raise
        except InvalidInputError as exc:
            metrics.ERRORS.labels(self.name, "invalid_input").inc()
            raise InvalidInput(str(exc)) from None
        except asyncio.TimeoutError:
            metrics.ERRORS.labels(self.name, "timeout").inc()
            raise PredictionTimeout(f"the model did not answer within {self.timeout_s:g} s; "
                                    "try fewer instances per request") from None
        except Exception as exc:  # a model failure is the server's fault, not the client's
            metrics.ERRORS.labels(self.name, "model_error").inc()
            log.exception("prediction failed")
            raise InferenceError(f"prediction failed: {exc}") from None

    # --- KServe's three stages: decode, answer, encode -------------------------------------------
    def preprocess(self, payload, headers=None) -> Request:
        """Decode: the family reads the records of a V1 or V2 request."""
        started = time.perf_counter()
        with self._errors():
            if isinstance(payload, (bytes, bytearray)):  # KServe leaves a body it does not take for JSON as is
                kind = (headers or {}).get("content-type", "no Content-Type")
                raise InvalidInput(f"the body was sent as {kind}; send it as JSON with the header "
                                   "'Content-Type: application/json' (curl: -H 'Content-Type: application/json')")
            records = self._records(payload)
        return Request(payload if isinstance(payload, InferRequest) else None, records, started, time.perf_counter())

    def validate(self, payload):
        return payload  # decoded and checked by preprocess (KServe's check looks at raw V1/V2 bodies)

    async def predict(self, request: Request, headers=None, response_headers=None) -> Request:
        """One model call: rows stacked with other requests' (micro-batcher), or one request at a time."""
        with self._errors():
            if self.media is not None:
                request.answers, request.timings_ms = await self.media.answer(request.records)
            else:
                request.unseen = self._unseen(request.records)
                request.answers = await asyncio.wait_for(self.batcher.submit(request.records, len(request.records)),
                                                         self.timeout_s)
        request.predicted = time.perf_counter()
        return request

    def postprocess(self, request: Request, headers=None, response_headers=None):
        """Encode: the V1 or V2 answer, with the version that gave it and where the time went."""
        if self.media is not None:
            timings_ms, extra = request.timings_ms, {}
            outputs = self.media.v2_outputs(request.answers) if request.v2 else request.answers
        else:
            out = request.answers
            numbers = (out.drop(columns="label") if "label" in out.columns else out).to_numpy(np.float64)
            if numbers.size and not np.isfinite(numbers).all():  # never NaN/inf (JSON null) in an answer
                metrics.ERRORS.labels(self.name, "invalid_input").inc()
                raise InvalidInput(self._no_finite_answer(request.records,
                                                          int(np.flatnonzero(~np.isfinite(numbers).all(1))[0])))
            outputs = self._v2_outputs(out) if request.v2 else self._v1_predictions(out)
            timings_ms = {k: round(v * 1000, 3) for k, v in (("preprocess", request.decoded - request.started),
                                                             ("inference", request.predicted - request.decoded),
                                                             ("postprocess", time.perf_counter() - request.predicted))}
            extra = {"unseen_categories": request.unseen} if request.unseen else {}
        if request.v2:
            return InferResponse(model_name=self.name, infer_outputs=outputs, model_version=self.version or None,
                                 response_id=request.v2.id or str(uuid.uuid4()),
                                 parameters={**{f"{k}_ms": v for k, v in timings_ms.items()},
                                             **{k: json.dumps(v) for k, v in extra.items()}})
        return {"predictions": outputs, "timings_ms": timings_ms, **extra, "model_version": self.version}

    def _unseen(self, records) -> dict:
        """Categories the model never saw: counted per column and flagged in the answer, not silently
        taken as 'unknown'. ``{column: {"count", "values" (up to 10), "rows"}}``."""
        if not self.known_categories or not isinstance(records, pd.DataFrame):
            return {}
        found = unseen_categories(self.known_categories, records)
        for column, seen in found.items():
            metrics.UNSEEN.labels(self.name, column).inc(seen["count"])
        return found

    # --- what the server says about itself (V2 model metadata) ------------------------------
    def get_input_types(self) -> list[dict]:
        return self.family.input_types(self.bundle.meta)

    def get_output_types(self) -> list[dict]:
        meta = self.bundle.meta
        if meta.task == "regression":
            return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
        if meta.task in INSTANCE_TASKS:  # detection, segmentation, pose, obb: each image's answer as JSON
            return [{"name": "detections", "datatype": "BYTES", "shape": [-1]}]
        if meta.task == "generation":
            return [{"name": "generated_text", "datatype": "BYTES", "shape": [-1]},
                    {"name": "tokens", "datatype": "INT64", "shape": [-1]}]
        k = len(meta.classes or [])
        if self.family.top_k:
            top, name = min(self.family.top_k, k), f"top{self.family.top_k}"
            return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probability", "datatype": "FP64", "shape": [-1]},
                    {"name": f"{name}_labels", "datatype": "BYTES", "shape": [-1, top]},
                    {"name": f"{name}_probabilities", "datatype": "FP64", "shape": [-1, top]}]
        return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probability", "datatype": "FP64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, k]}]  # classes: in each answer

    def _v1_predictions(self, out: pd.DataFrame) -> list:
        if self.bundle.meta.task == "regression":
            return out["prediction"].to_numpy(np.float64).tolist()
        classes = self.bundle.meta.classes
        probs = out[[f"proba_{c}" for c in classes]].to_numpy()
        return [{"label": label, "probability": float(p), "probabilities": dict(zip(classes, map(float, row)))}
                for label, p, row in zip(out["label"], out["probability"], probs)]

    def _v2_outputs(self, out: pd.DataFrame) -> list[InferOutput]:
        n = len(out)
        if self.bundle.meta.task == "regression":
            return [InferOutput("prediction", [n], "FP64", out["prediction"].to_numpy(np.float64).tolist())]
        classes = self.bundle.meta.classes
        probs = out[[f"proba_{c}" for c in classes]].to_numpy(np.float64)
        return [
            InferOutput("label", [n], "BYTES", out["label"].astype(str).tolist()),
            InferOutput("probability", [n], "FP64", out["probability"].to_numpy(np.float64).tolist()),
            InferOutput("probabilities", [n, len(classes)], "FP64", probs.ravel().tolist(),
                        parameters={"classes": ",".join(classes)}),
        ]


def _join(parts: list):
    """Concurrent requests' records as one: frames stacked (columns aligned by name), or windows listed."""
    if all(isinstance(p, pd.DataFrame) for p in parts):
        if any(set(p.columns) != set(parts[0].columns) for p in parts):
            # concat would fill a request's missing column with NaN (then imputed): each must answer alone
            raise ValueError("requests with different columns")
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    return [row for part in parts for row in (part.tolist() if hasattr(part, "tolist") else part)]


def _split(out: pd.DataFrame, sizes: list[int]) -> list[pd.DataFrame]:
    if len(sizes) == 1:
        return [out]
    bounds = np.cumsum([0, *sizes])
    return [out.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds[:-1], bounds[1:])]
