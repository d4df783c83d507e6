"""Families whose records do not stack across requests (images, texts): decode, one model call,
answers with timings.

V1  ``{"instances": ["<base64 image>" | {"b64": "..."}, ...]}`` (texts: strings or {"text": ...})
V2  one BYTES input of shape [n]: base64 images (or raw bytes), or the texts.
Classification answers carry the family's top-k labels with probabilities; detection answers
boxes (xyxy, pixels), class names and scores, and segmentation, pose and obb answers add per
instance the mask as a polygon ``masks`` [[x, y], ...] (pixels), ``keypoints`` [[x, y, conf], ...]
or the rotated box as ``rotated_boxes`` [cx, cy, w, h, r] (r in radians) and its ``corners``
[[x, y] x 4]; V2 answers one BYTES output ``detections`` holding each image's answer as JSON. Every answer carries ``timings_ms``: preprocess
(decoding), inference (the model call) and postprocess (building the answer).

The family bounds a request before it is decoded (images: each image's pixels read from its
header, all pixels of the request, the number of images; ``RequestTooLarge``, HTTP 413).
Decoding runs in one worker thread, one request at a time, so the event loop keeps answering
(health checks, other requests) and at most one request's decoded pixels are in memory.
"""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from kserve import InferOutput

from components.tasks.instances import INSTANCE_TASKS


# One thread decodes, one request's images at a time: decoded pixels in memory stay within one
# request's limit, and the freed buffers are reused by the same thread.
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-decode")


class MediaModel:
    """The bundle's model behind a lock: vision and text models are called one batch at a time."""

    def __init__(self, bundle, timeout_s: float):
        self.bundle, self.timeout_s = bundle, timeout_s
        self.lock = asyncio.Lock()

    def _features(self, items: list):
        return self.bundle.features(self.bundle.family.bound(items))  # the family's size limits first

    async def answer(self, items: list) -> tuple[list[dict], dict[str, float]]:
        t0 = time.perf_counter()
        inputs = await asyncio.get_running_loop().run_in_executor(_DECODER, self._features, items)
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
        if self.bundle.meta.task in INSTANCE_TASKS:
            return self.bundle.detections(raw)
        if self.bundle.meta.task == "generation":  # per prompt {"generated_text", "tokens"}
            return list(raw)
        k, out = self.bundle.family.top_k, []
        for row in np.asarray(raw):
            top = np.argsort(-row)[:k]
            out.append({"label": classes[top[0]], "probability": float(row[top[0]]),
                        f"top{k}": [{"label": classes[i], "probability": float(row[i])} for i in top]})
        return out

    def v2_outputs(self, answers: list[dict]) -> list[InferOutput]:
        n = len(answers)
        if self.bundle.meta.task in INSTANCE_TASKS:
            return [InferOutput("detections", [n], "BYTES", [json.dumps(a) for a in answers])]
        if self.bundle.meta.task == "generation":
            return [InferOutput("generated_text", [n], "BYTES", [a["generated_text"] for a in answers]),
                    InferOutput("tokens", [n], "INT64", [a["tokens"] for a in answers])]
        top = f"top{self.bundle.family.top_k}"
        k = len(answers[0][top])
        return [InferOutput("label", [n], "BYTES", [a["label"] for a in answers]),
                InferOutput("probability", [n], "FP64", [a["probability"] for a in answers]),
                InferOutput(f"{top}_labels", [n, k], "BYTES", [t["label"] for a in answers for t in a[top]]),
                InferOutput(f"{top}_probabilities", [n, k], "FP64",
                            [t["probability"] for a in answers for t in a[top]])]

