"""One setting names every step image: ``PLATFORM_IMAGE_REGISTRY`` and ``PLATFORM_IMAGE_TAG``."""
from __future__ import annotations

import os

STEP_IMAGES = {"data": "data", "train": "train", "registry": "registry", "deploy": "deploy", "serving": "serving"}


def image_for(step: str, registry: str | None = None, tag: str | None = None) -> str:
    registry = (registry or os.environ.get("PLATFORM_IMAGE_REGISTRY", "ghcr.io/kfp-ml-platform")).rstrip("/")
    tag = tag or os.environ.get("PLATFORM_IMAGE_TAG", "0.1.0")
    return f"{registry}/{STEP_IMAGES[step]}:{tag}"
