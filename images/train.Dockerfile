# The train/evaluate image: a CUDA PyTorch base (the train task runs on a GPU node) + the "train" and
# "vision" extras (timm, Ultralytics, transformers for image and text models).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install ".[train,vision]" && useradd --uid 1000 --create-home app
USER 1000
