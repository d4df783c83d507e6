# The data step image (load, preprocess, split): pandas, pyarrow, scikit-learn; no torch.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install ".[data]" && useradd --uid 1000 --create-home app
USER 1000
