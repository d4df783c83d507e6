#!/usr/bin/env bash
# Build the step images with podman (or buildah):  scripts/build-images.sh [IMAGE ...]
#
#   IMAGE: data train registry deploy serving (default: all five), built on two shared bases:
#          base (venv, uv, uid 1000) and torch (base + torch, shared by train and serving).
# Environment:
#   PLATFORM_IMAGE_REGISTRY  tag prefix (default localhost/kfp-ml-platform; what pipelines/images.py reads)
#   PLATFORM_IMAGE_TAG       tag (default 0.1.0)
#   BASE_IMAGE               default: what scripts/podman-setup.sh prints (python:3.11-slim where it can be
#                            pulled, else a Debian bookworm base bootstrapped on this machine)
#   TORCH                    default "torch==2.14.1 torchvision==0.29.1" (the versions the tests run)
#   TORCH_VARIANT            cuda (default: PyPI's build, runs on GPU nodes and CPUs) or cpu (PyTorch's CPU
#                            index; smaller; use with e.g. PLATFORM_IMAGE_TAG=0.1.0-cpu)
#   PIP_INDEX_ARGS           extra uv index options; default: pip's own config on this machine
#                            (find-links / extra-index-url folders, bind-mounted read-only into the build)
#   PIP_CERT / SSL_CERT_FILE a CA bundle to trust during the build (mounted read-only; not in the image)
#   BUILDER                  podman (default) or buildah
# Every build uses --network=host and layer caching: requirements are installed before the source is
# copied in, so a code change rebuilds an image in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${PLATFORM_IMAGE_REGISTRY:-localhost/kfp-ml-platform}
TAG=${PLATFORM_IMAGE_TAG:-0.1.0}
TORCH=${TORCH:-torch==2.14.1 torchvision==0.29.1}
TORCH_VARIANT=${TORCH_VARIANT:-cuda}
BUILDER=${BUILDER:-podman}
BASE_IMAGE=${BASE_IMAGE:-$(scripts/podman-setup.sh | tail -1)}
images=("$@")
((${#images[@]})) || images=(data registry deploy train serving)

case $TORCH_VARIANT in
  cuda) TORCH_INDEX_ARGS="" ;;
  cpu) TORCH_INDEX_ARGS="--index-url https://download.pytorch.org/whl/cpu" ;;
  *) echo "TORCH_VARIANT must be cuda or cpu, not $TORCH_VARIANT" >&2; exit 2 ;;
esac

# pip's config on this machine (e.g. wheel folders on disk) → uv options + read-only bind mounts.
mounts=()
if [[ -z "${PIP_INDEX_ARGS+set}" ]]; then
  PIP_INDEX_ARGS=""
  pip_cmd=$(command -v pip3 || command -v pip || true)
  [[ -x .venv/bin/pip ]] && pip_cmd=.venv/bin/pip
  if [[ -n "$pip_cmd" ]]; then
    while read -r kind value; do
      path=${value#file://}
      if [[ "$path" == /* ]]; then  # a local folder: mount it where the same URL finds it
        [[ -e "$path" ]] || continue
        path=${path%/}; [[ $(basename "$path") == simple ]] && path=$(dirname "$path")  # ../../files links
        [[ " ${mounts[*]-} " == *" -v $path:$path:ro "* ]] || mounts+=(-v "$path:$path:ro")
      fi
      PIP_INDEX_ARGS+=" --$kind $value"
    done < <(python3 - "$pip_cmd" <<'EOF'
import os, subprocess, sys
out = subprocess.run([sys.argv[1], "config", "list"], capture_output=True, text=True).stdout
seen = []
def add(kind, values):
    for v in values.replace("\n", " ").split():
        if (kind, v) not in seen:
            seen.append((kind, v))
for line in out.splitlines():
    key, _, value = line.partition("=")
    value = value.strip().strip("'\"")
    if key.endswith(".find-links"):
        add("find-links", value)
    elif key.endswith(".extra-index-url"):
        add("extra-index-url", value)
add("find-links", os.environ.get("PIP_FIND_LINKS", ""))
add("extra-index-url", os.environ.get("PIP_EXTRA_INDEX_URL", ""))
for kind, value in seen:
    print(kind, value)
EOF
    )
  fi
  # Local folders hold only some versions: take the best version from any index, not the first index's.
  [[ -n "$PIP_INDEX_ARGS" ]] && PIP_INDEX_ARGS+=" --index-strategy unsafe-best-match"
fi

# A CA bundle this machine's pip trusts (e.g. a TLS-intercepting proxy's) is trusted by the build too.
ca=${PIP_CERT:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-}}}
ca_args=()
if [[ -n "$ca" && -f "$ca" ]]; then
  mounts+=(-v "$ca:/run/build-ca.crt:ro")
  ca_args=(--build-arg SSL_CERT_FILE=/run/build-ca.crt --build-arg PIP_CERT=/run/build-ca.crt)
fi

build() {  # build NAME DOCKERFILE [--build-arg ...]
  local name=$1 file=$2; shift 2
  local ref="$REGISTRY/$name:$TAG" started=$SECONDS
  echo "==> $ref  (images/$file)"
  if [[ $BUILDER == buildah ]]; then
    buildah build --layers --network=host "${mounts[@]}" -f "images/$file" -t "$ref" \
      --build-arg "PIP_INDEX_ARGS=$PIP_INDEX_ARGS" "${ca_args[@]}" "$@" .
  else
    podman build --layers --network=host "${mounts[@]}" -f "images/$file" -t "$ref" \
      --build-arg "PIP_INDEX_ARGS=$PIP_INDEX_ARGS" "${ca_args[@]}" "$@" .
  fi
  echo "<== $ref built in $((SECONDS - started)) s"
}

total=$SECONDS
echo "base image: $BASE_IMAGE; torch: $TORCH ($TORCH_VARIANT); index args:${PIP_INDEX_ARGS:- (PyPI)}"
build base base.Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE"
if [[ " ${images[*]} " == *" train "* || " ${images[*]} " == *" serving "* ]]; then
  build torch torch.Dockerfile --build-arg "PLATFORM_BASE=$REGISTRY/base:$TAG" --build-arg "TORCH=$TORCH" \
    --build-arg "TORCH_INDEX_ARGS=$TORCH_INDEX_ARGS"
fi
for image in "${images[@]}"; do
  case $image in
    data|registry|deploy) build "$image" "$image.Dockerfile" --build-arg "PLATFORM_BASE=$REGISTRY/base:$TAG" ;;
    train|serving) build "$image" "$image.Dockerfile" --build-arg "TORCH_IMAGE=$REGISTRY/torch:$TAG" ;;
    *) echo "unknown image $image (data train registry deploy serving)" >&2; exit 2 ;;
  esac
done
echo "all built in $((SECONDS - total)) s"
podman images --format "{{.Repository}}:{{.Tag}}  {{.Size}}" | grep "^$REGISTRY/.*:$TAG " || true
