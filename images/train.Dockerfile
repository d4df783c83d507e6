# The train/evaluate image: torch (images/torch.Dockerfile: the version the tests run, CUDA or CPU
# variant) + the "train" and "vision" extras (timm, Ultralytics, transformers for image and text models).
# Ultralytics needs opencv-python, whose cv2 needs libGL; the headless build of the same version
# replaces it, so cv2 imports in a slim image.
ARG TORCH_IMAGE=ghcr.io/kfp-ml-platform/torch:0.1.0
FROM ${TORCH_IMAGE}
# A TLS-intercepting proxy's CA, for the build only (scripts/build-images.sh mounts it; unset elsewhere).
ARG SSL_CERT_FILE
ARG PIP_CERT
ARG PIP_INDEX_ARGS=""
COPY pyproject.toml /app/
RUN --mount=type=cache,target=/var/cache/uv,sharing=locked \
    uv pip install --quiet $PIP_INDEX_ARGS $PLATFORM_TORCH $(python images/requirements.py pyproject.toml train vision) \
 && cv=$(python -c "import importlib.metadata as m; print(m.version('opencv-python'))") \
 && uv pip uninstall --quiet opencv-python \
 && uv pip install --quiet --reinstall $PIP_INDEX_ARGS "opencv-python-headless==$cv" \
 && python -c "import cv2, torch; print('cv2', cv2.__version__, 'torch', torch.__version__)"
# git: the external model (model.params.repo) clones its training code at a pinned commit.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends git >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && git --version
COPY components /app/components
# uv's cache at run time (the external model's environments): under PLATFORM_HOME, as every writable
# path; /var/cache/uv is the build's cache mount, and the root filesystem is read-only.
ENV UV_CACHE_DIR=/tmp/platform/cache/uv
USER 1000:1000
