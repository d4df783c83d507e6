# The base of the train and serving images: the step base plus PyTorch, in a layer of its own that
# both share (the largest layer by far; built once, reused by both images and by every rebuild).
#   TORCH: the versions the tests run (Makefile's TORCH); torchvision must match torch.
#   TORCH_INDEX_ARGS: empty: PyPI's build, CUDA libraries included (runs on GPU nodes with only the
#     driver installed, and on CPUs); the CPU variant (no CUDA libraries, ~1/5 the size):
#     --index-url https://download.pytorch.org/whl/cpu
ARG PLATFORM_BASE=ghcr.io/kfp-ml-platform/base:0.1.0
FROM ${PLATFORM_BASE}
# A TLS-intercepting proxy's CA, for the build only (scripts/build-images.sh mounts it; unset elsewhere).
ARG SSL_CERT_FILE
ARG PIP_CERT
ARG TORCH="torch==2.14.1 torchvision==0.29.1"
ARG TORCH_INDEX_ARGS=""
ARG PIP_INDEX_ARGS=""
# No uv cache mount: the CUDA wheels would be written twice (cache + venv) for nothing.
# Later installs name $PLATFORM_TORCH too, so no extra can move torch off the tested version.
ENV PLATFORM_TORCH=${TORCH}
# Importing torch makes its inductor cache folder under PLATFORM_HOME as root; removed, or a --tmpfs /tmp
# that copies the image's /tmp up (podman's default) would leave PLATFORM_HOME unwritable for uid 1000.
RUN uv pip install --quiet --no-cache $PIP_INDEX_ARGS $TORCH_INDEX_ARGS $TORCH \
 && python -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
 && rm -rf /tmp/platform /tmp/*.lock
