#!/usr/bin/env bash
# Podman for the step images on this machine (and on CI): install, configure, and make a base image.
#
#   scripts/podman-setup.sh                # podman + config; a local base image only if none can be pulled
#   scripts/podman-setup.sh --local-base   # always (re)use a locally bootstrapped base image
#
# 1. podman, buildah, runc and mmdebstrap from Debian's packages when missing (apt-get, as root).
# 2. A containers.conf drop-in: `default_ulimits = []` (a sandbox without CAP_SYS_RESOURCE cannot
#    raise RLIMIT_NOFILE/NPROC, so every container start fails otherwise), the runc runtime and the
#    cgroupfs cgroup manager (crun refuses hybrid cgroups). Harmless on an ordinary machine.
# 3. The base image every step image builds FROM. On a machine that reaches Docker Hub that is
#    python:3.11-slim; where no container registry is reachable, a Debian bookworm root filesystem
#    (python3 is 3.11 there) made with mmdebstrap and imported as localhost/python:3.11-slim-local.
#
# Prints the base image to use as its last line (the Makefile passes it as BASE_IMAGE).
set -euo pipefail

LOCAL_BASE=localhost/python:3.11-slim-local
REMOTE_BASE=${REMOTE_BASE:-docker.io/library/python:3.11-slim}
force_local=0
[[ "${1:-}" == "--local-base" ]] && force_local=1

say() { echo "podman-setup: $*" >&2; }

need=()
for tool in podman buildah runc mmdebstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
  if [[ $(id -u) != 0 ]]; then
    say "missing ${need[*]}; install them (apt-get install podman buildah runc mmdebstrap) or run this as root"
    exit 1
  fi
  say "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends podman buildah runc mmdebstrap uidmap >/dev/null
fi

if [[ $(id -u) == 0 ]]; then conf_dir=/etc/containers/containers.conf.d
else conf_dir=${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf.d; fi
mkdir -p "$conf_dir"
cat > "$conf_dir/50-kfp-ml-platform.conf" <<'EOF'
# Written by kfp-ml-platform's scripts/podman-setup.sh.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF

if ! podman run --rm --help >/dev/null 2>&1 || ! podman info >/dev/null 2>&1; then
  say "podman does not work here: $(podman info 2>&1 | tail -1)"
  exit 1
fi

if ((force_local == 0)); then
  if podman image exists "$REMOTE_BASE"; then echo "$REMOTE_BASE"; exit 0; fi
  if podman image exists "$LOCAL_BASE"; then echo "$LOCAL_BASE"; exit 0; fi
  if timeout 60 podman pull -q "$REMOTE_BASE" >/dev/null 2>&1; then echo "$REMOTE_BASE"; exit 0; fi
  say "$REMOTE_BASE cannot be pulled: bootstrapping $LOCAL_BASE from Debian packages instead"
fi

if ! podman image exists "$LOCAL_BASE"; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  say "mmdebstrap bookworm (python3 3.11) into $work/rootfs.tar"
  # passwd: useradd for the non-root user the images run as.
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,passwd \
    bookworm "$work/rootfs.tar"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$work/rootfs.tar" "$LOCAL_BASE" >/dev/null
  say "imported $LOCAL_BASE ($(podman image inspect --format '{{.Size}}' "$LOCAL_BASE") bytes)"
fi
echo "$LOCAL_BASE"
