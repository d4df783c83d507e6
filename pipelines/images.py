"""One setting names every step image: ``PLATFORM_IMAGE_REGISTRY`` and ``PLATFORM_IMAGE_TAG``
(or the --image-registry/--image-tag flags of compile.py and submit.py, which win)."""
from __future__ import annotations

import os

STEP_IMAGES = {"data": "data", "train": "train", "registry": "registry", "deploy": "deploy", "serving": "serving"}
DEFAULT_REGISTRY, DEFAULT_TAG = "ghcr.io/kfp-ml-platform", "0.1.0"  # placeholders: nothing is published there


def image_for(step: str, registry: str | None = None, tag: str | None = None) -> str:
    registry = (registry or os.environ.get("PLATFORM_IMAGE_REGISTRY", DEFAULT_REGISTRY)).rstrip("/")
    tag = tag or os.environ.get("PLATFORM_IMAGE_TAG", DEFAULT_TAG)
    return f"{registry}/{STEP_IMAGES[step]}:{tag}"


def registry_problem(registry: str | None = None) -> str | None:
    """Why a cluster could not pull the step images, or None when a registry is configured."""
    if registry or os.environ.get("PLATFORM_IMAGE_REGISTRY"):
        return None
    return ("no image registry is configured, so the cluster would pull the placeholder images "
            f"{image_for('data')} and the like, which do not exist: push the step images (make images) to a "
            "registry the cluster can pull from and pass --image-registry REGISTRY [--image-tag TAG] or set "
            "PLATFORM_IMAGE_REGISTRY [and PLATFORM_IMAGE_TAG]")
