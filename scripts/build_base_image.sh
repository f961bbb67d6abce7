#!/usr/bin/env bash
# Build a local Debian bookworm base image with Python 3.11, without any container registry:
# debootstrap a minimal root file system from the Debian mirror, add Python, `docker import` it
# (scripts/debootstrap_lib.sh; scripts/build_postgres_image.sh makes the Postgres image the same way).
# For machines that cannot reach Docker Hub (python:3.11-slim is the default base elsewhere).
#
#   scripts/build_base_image.sh            # builds passos-base:bookworm unless it exists
#   scripts/build_base_image.sh --force    # rebuild
#
# Needs root, debootstrap and a running Docker daemon. Environment:
#   BASE_TAG        image tag to create (default passos-base:bookworm)
#   DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail

cd "$(dirname "$0")/.."
log() { echo "[build_base_image] $*" >&2; }
# shellcheck source=scripts/debootstrap_lib.sh
source scripts/debootstrap_lib.sh

BASE_TAG="${BASE_TAG:-passos-base:bookworm}"
PACKAGES=python3,python3-venv,python3-pip,ca-certificates

force=0
[[ "${1:-}" == "--force" ]] && force=1

if [[ $force -eq 0 ]] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    log "$BASE_TAG exists (use --force to rebuild)"
    exit 0
fi
require_debootstrap

rootfs="$(mktemp -d /tmp/passos-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

started=$(date +%s)
debootstrap_rootfs "$rootfs" "$PACKAGES"
slim_rootfs "$rootfs"
import_rootfs "$rootfs" "$BASE_TAG" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/usr/bin/python3"]'
log "built $BASE_TAG in $(( $(date +%s) - started )) s: $(image_size "$BASE_TAG") ($(docker run --rm "$BASE_TAG" python3 --version))"
