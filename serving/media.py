"""Images and texts over V1 and V2: decode, one model call, answers with timings.

V1  ``{"instances": ["<base64 image>" | {"b64": "..."}, ...]}`` (texts: strings or {"text": ...})
V2  one BYTES input of shape [n]: base64 images (or raw bytes), or the texts.
Classification answers carry the top-5 labels with probabilities; detection answers boxes
(xyxy, pixels), class names and scores. Every answer carries ``timings_ms``: preprocess
(decoding), inference (the model call) and postprocess (building the answer).

Images are bounded before they are decoded: each image's pixel count (read from its header), the
pixels of all images in one request, and the number of images (``RequestTooLarge``, HTTP 413).
Decoding runs in one worker thread, one request at a time, so the event loop keeps answering
(health checks, other requests) and at most one request's decoded pixels are in memory.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from kserve import InferOutput, InferRequest
from kserve.errors import InvalidInput

from components.errors import InvalidInputError

MAX_ITEMS = 256  # texts per request


class RequestTooLarge(Exception):
    """A request over a size limit that its Content-Length cannot show (pixels, images): HTTP 413."""


@dataclass
class Limits:
    max_images: int = 64                  # images per request
    max_image_pixels: int = 4096 * 4096   # width × height of one image
    max_request_pixels: int = 4096 * 4096  # all images of one request (about 7 bytes a pixel while decoding)


LIMITS = Limits()
# One thread decodes, one request's images at a time: decoded pixels in memory stay within one
# request's limit, and the freed buffers are reused by the same thread.
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-decode")


def configure(max_images: int, max_image_pixels: int, max_request_pixels: int) -> None:
    """Set the image limits (``python -m serving`` flags)."""
    from PIL import Image

    LIMITS.max_images, LIMITS.max_image_pixels, LIMITS.max_request_pixels = \
        max_images, max_image_pixels, max_request_pixels
    # PIL refuses over twice its own limit at open, before our check can name the size: keep its
    # limit (89 MP) as the backstop for the decoder, raised where the configured one is higher.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_image_pixels)


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
    return payload["instances"]


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
    return items


def _looks_encoded(value) -> bool:
    """Base64 sent as bytes starts with a base64 letter; JPEG/PNG/... signatures do not."""
    return isinstance(value, bytes) and (value[:1].isalnum() or value[:1] in (b"+", b"/"))


def checked_images(items: list) -> list:
    """Each image's size from its header, against the limits, before anything is decoded.

    Returns the images as bytes; what is not an image is passed on unchanged for the decoder to
    name. Runs in a worker thread (headers of up to ``max_images`` images).
    """
    from PIL import Image

    if len(items) > LIMITS.max_images:
        raise RequestTooLarge(f"{len(items)} images in one request; at most {LIMITS.max_images} (--max_images)")
    out, total = [], 0
    for n, item in enumerate(items):
        data = item.get("b64", item.get("image")) if isinstance(item, dict) else item
        if isinstance(data, str):
            try:
                data = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                out.append(item)  # request_images says what is wrong with it
                continue
        if not isinstance(data, (bytes, bytearray)):
            out.append(item)
            continue
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except Image.DecompressionBombError as exc:
            raise RequestTooLarge(f"instance {n} is refused by the image decoder ({exc}); at most "
                                  f"{LIMITS.max_image_pixels:,} pixels per image (--max_image_pixels)") from None
        except Exception:  # not an image: the decoder names it
            out.append(bytes(data))
            continue
        pixels = width * height
        if pixels > LIMITS.max_image_pixels:
            raise RequestTooLarge(f"instance {n} is {width}x{height} = {pixels:,} pixels; at most "
                                  f"{LIMITS.max_image_pixels:,} per image (--max_image_pixels); send it smaller")
        total += pixels
        if total > LIMITS.max_request_pixels:
            raise RequestTooLarge(f"the images up to instance {n} hold {total:,} pixels; at most "
                                  f"{LIMITS.max_request_pixels:,} per request (--max_request_pixels); send fewer "
                                  "or smaller images")
        out.append(bytes(data))
    return out


class MediaModel:
    """The bundle's model behind a lock: vision and text models are called one batch at a time."""

    def __init__(self, bundle, timeout_s: float):
        self.bundle, self.timeout_s = bundle, timeout_s
        self.lock = asyncio.Lock()

    def _features(self, items: list):
        if self.bundle.meta.family == "text":
            if len(items) > MAX_ITEMS:
                raise RequestTooLarge(f"{len(items)} texts in one request; at most {MAX_ITEMS}")
        else:
            items = checked_images(items)
        try:
            return self.bundle.features(items)
        except InvalidInputError as exc:
            raise InvalidInput(str(exc)) from None

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
        if self.bundle.meta.task == "detection":
            return self.bundle.detections(raw)
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

