"""Images and texts over V1 and V2: decode, one model call, answers with timings.

V1  ``{"instances": ["<base64 image>" | {"b64": "..."}, ...]}`` (texts: strings or {"text": ...})
V2  one BYTES input of shape [n]: base64 images (or raw bytes), or the texts.
Classification answers carry the top-5 labels with probabilities; detection answers boxes
(xyxy, pixels), class names and scores. Every answer carries ``timings_ms``: preprocess
(decoding), inference (the model call) and postprocess (building the answer).
"""
from __future__ import annotations

import asyncio
import io
import json
import time

import numpy as np
from kserve import InferOutput, InferRequest
from kserve.errors import InvalidInput

from components.errors import InvalidInputError

MAX_ITEMS = 256


def warmup_records(bundle) -> list:
    """One typical input, so the first request pays no lazy initialisation."""
    if bundle.meta.family == "text":
        return ["a short warm-up text"]
    from PIL import Image

    size = int(bundle.adapter.params.get("size") or getattr(bundle.adapter, "input_size_", None) or 64)
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (127, 127, 127)).save(buffer, format="PNG")
    return [buffer.getvalue()]


def v1_items(payload) -> list:
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list) or not payload["instances"]:
        raise InvalidInput('expected {"instances": [...]} with at least one base64 image (or text)')
    return _bounded(payload["instances"])


def v2_items(request: InferRequest, family: str) -> list:
    if len(request.inputs) != 1 or request.inputs[0].datatype != "BYTES":
        got = [(i.name, i.datatype) for i in request.inputs]
        raise InvalidInput(f"expected one BYTES input of shape [n] holding {'texts' if family == 'text' else 'images'}; "
                           f"got {got}")
    data = request.inputs[0].data
    items = data.tolist() if hasattr(data, "tolist") else list(data)
    if family == "text":
        items = [v.decode() if isinstance(v, bytes) else v for v in items]
    else:  # base64 text or raw bytes, both are fine
        items = [v.decode() if _looks_encoded(v) else v for v in items]
    return _bounded(items)


def _looks_encoded(value) -> bool:
    """Base64 sent as bytes starts with a base64 letter; JPEG/PNG/... signatures do not."""
    return isinstance(value, bytes) and (value[:1].isalnum() or value[:1] in (b"+", b"/"))


def _bounded(items: list) -> list:
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"{len(items)} items in one request; at most {MAX_ITEMS}")
    return items


class MediaModel:
    """The bundle's model behind a lock: vision and text models are called one batch at a time."""

    def __init__(self, bundle, timeout_s: float):
        self.bundle, self.timeout_s = bundle, timeout_s
        self.lock = asyncio.Lock()

    async def answer(self, items: list) -> tuple[list[dict], dict[str, float]]:
        t0 = time.perf_counter()
        try:
            inputs = self.bundle.features(items)
        except InvalidInputError as exc:
            raise InvalidInput(str(exc)) from None
        t1 = time.perf_counter()
        async with self.lock:
            raw = await asyncio.wait_for(asyncio.to_thread(self.bundle.adapter.predict_raw, inputs), self.timeout_s)
        t2 = time.perf_counter()
        answers = self._answers(raw)
        t3 = time.perf_counter()
        return answers, {"preprocess": round((t1 - t0) * 1e3, 3), "inference": round((t2 - t1) * 1e3, 3),
                         "postprocess": round((t3 - t2) * 1e3, 3)}

    def _answers(self, raw) -> list[dict]:
        classes = self.bundle.meta.classes
        if self.bundle.meta.task == "detection":
            return [{"boxes": np.round(np.asarray(d["boxes"], dtype=float).reshape(-1, 4), 2).tolist(),
                     "labels": [classes[int(c)] for c in d["classes"]],
                     "scores": np.round(np.asarray(d["scores"], dtype=float), 5).tolist()} for d in raw]
        out = []
        for row in np.asarray(raw):
            top = np.argsort(-row)[:5]
            out.append({"label": classes[top[0]], "probability": float(row[top[0]]),
                        "top5": [{"label": classes[i], "probability": float(row[i])} for i in top]})
        return out

    def v2_outputs(self, answers: list[dict]) -> list[InferOutput]:
        n = len(answers)
        if self.bundle.meta.task == "detection":
            return [InferOutput("detections", [n], "BYTES", [json.dumps(a) for a in answers])]
        k = len(answers[0]["top5"])
        return [InferOutput("label", [n], "BYTES", [a["label"] for a in answers]),
                InferOutput("probability", [n], "FP64", [a["probability"] for a in answers]),
                InferOutput("top5_labels", [n, k], "BYTES", [t["label"] for a in answers for t in a["top5"]]),
                InferOutput("top5_probabilities", [n, k], "FP64",
                            [t["probability"] for a in answers for t in a["top5"]])]

