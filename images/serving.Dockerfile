# The predictor image (KServe ServingRuntime / custom predictor): kserve + the frameworks bundles use.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch \
 && pip install ".[serving]" && useradd --uid 1000 --create-home app
USER 1000
EXPOSE 8080
ENTRYPOINT ["python", "-m", "serving"]
CMD ["--model_dir", "/mnt/models", "--http_port", "8080"]
