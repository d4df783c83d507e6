# The predictor image (KServe ServingRuntime / custom predictor; the container runner's model server):
# torch (images/torch.Dockerfile, pinned) + kserve and the frameworks bundles use ("serving", "vision").
# The root filesystem is read-only in the ServingRuntime: every cache and config is under /tmp.
# opencv-python is swapped for the headless build of the same version (no libGL in slim images).
ARG TORCH_IMAGE=ghcr.io/kfp-ml-platform/torch:0.1.0
FROM ${TORCH_IMAGE}
# A TLS-intercepting proxy's CA, for the build only (scripts/build-images.sh mounts it; unset elsewhere).
ARG SSL_CERT_FILE
ARG PIP_CERT
ARG PIP_INDEX_ARGS=""
COPY pyproject.toml /app/
RUN --mount=type=cache,target=/var/cache/uv,sharing=locked \
    uv pip install --quiet $PIP_INDEX_ARGS $PLATFORM_TORCH $(python images/requirements.py pyproject.toml serving vision) \
 && cv=$(python -c "import importlib.metadata as m; print(m.version('opencv-python'))") \
 && uv pip uninstall --quiet opencv-python \
 && uv pip install --quiet --reinstall $PIP_INDEX_ARGS "opencv-python-headless==$cv" \
 && python -c "import cv2, torch; print('cv2', cv2.__version__, 'torch', torch.__version__)"
COPY components /app/components
COPY serving /app/serving
# python -m serving listens on 127.0.0.1 unless told: in a container it must listen on the pod network.
ENV SERVING_HOST=0.0.0.0
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["python", "-m", "serving"]
# All interfaces in the container (the pod network); python -m serving alone listens on 127.0.0.1.
CMD ["--model_dir", "/mnt/models", "--http_port", "8080", "--host", "0.0.0.0"]
