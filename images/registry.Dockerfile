# The registry step image (register: the MLflow client and boto3); no torch.
# Built on images/base.Dockerfile (PLATFORM_BASE); runs as uid 1000 with a read-only root filesystem.
ARG PLATFORM_BASE=ghcr.io/kfp-ml-platform/base:0.1.0
FROM ${PLATFORM_BASE}
# A TLS-intercepting proxy's CA, for the build only (scripts/build-images.sh mounts it; unset elsewhere).
ARG SSL_CERT_FILE
ARG PIP_CERT
ARG PIP_INDEX_ARGS=""
COPY pyproject.toml /app/
RUN --mount=type=cache,target=/var/cache/uv,sharing=locked \
    uv pip install --quiet $PIP_INDEX_ARGS $(python images/requirements.py pyproject.toml registry)
COPY components /app/components
USER 1000:1000
