# The predictor image (KServe ServingRuntime / custom predictor): kserve + the frameworks bundles use.
FROM python:3.11-slim
# The root filesystem is read-only in the ServingRuntime: every cache and config goes under /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PLATFORM_HOME=/tmp/platform HF_HOME=/tmp/hf MPLCONFIGDIR=/tmp/matplotlib YOLO_CONFIG_DIR=/tmp/ultralytics
WORKDIR /app
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision \
 && pip install ".[serving,vision]" && useradd --uid 1000 --create-home app
USER 1000
EXPOSE 8080
ENTRYPOINT ["python", "-m", "serving"]
CMD ["--model_dir", "/mnt/models", "--http_port", "8080"]
