# The base every step image builds on: an empty virtual environment, uv, a non-root user (uid 1000),
# and the environment that keeps every writable path under PLATFORM_HOME. Each step image then installs
# the project's core requirements and its step's extras (images/requirements.py reads pyproject.toml).
#   BASE_IMAGE: python:3.11-slim on a machine that reaches Docker Hub; any image with python3 3.11
#               and python3-venv works (scripts/podman-setup.sh bootstraps one from Debian packages).
# Bytecode is compiled at build time (the root filesystem is read-only at run time).
# Every writable path derives from PLATFORM_HOME (under /tmp): the steps run with a read-only root
# filesystem and a writable /tmp (tmpfs or a volume).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim
FROM ${BASE_IMAGE}
# A TLS-intercepting proxy's CA, for the build only (scripts/build-images.sh mounts it; unset elsewhere).
ARG SSL_CERT_FILE
ARG PIP_CERT
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    UV_LINK_MODE=copy UV_PYTHON=/opt/venv/bin/python UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1 UV_CACHE_DIR=/var/cache/uv \
    PYTHONPATH=/app PLATFORM_HOME=/tmp/platform
ENV HOME=${PLATFORM_HOME} XDG_CACHE_HOME=${PLATFORM_HOME}/cache MPLCONFIGDIR=${PLATFORM_HOME}/matplotlib \
    HF_HOME=${PLATFORM_HOME}/hf YOLO_CONFIG_DIR=${PLATFORM_HOME}/ultralytics \
    TORCHINDUCTOR_CACHE_DIR=${PLATFORM_HOME}/torchinductor TRITON_CACHE_DIR=${PLATFORM_HOME}/triton \
    MLFLOW_DISABLE_TELEMETRY=true MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet uv==0.13.9 \
 && (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --no-create-home --home-dir /tmp/platform app)
WORKDIR /app
COPY images/requirements.py /app/images/
# images/<step>.Dockerfile take PIP_INDEX_ARGS: extra index options for uv (--find-links DIR,
# --extra-index-url URL, --index-strategy ...); empty: PyPI alone (scripts/build-images.sh fills it from pip's config).
