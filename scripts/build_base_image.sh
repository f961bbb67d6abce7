#!/usr/bin/env bash
# Build a local Debian bookworm base image with Python 3.11, without any container registry:
# debootstrap a minimal root file system from the Debian mirror, add Python, `docker import` it.
# For machines that cannot reach Docker Hub (python:3.11-slim is the default base elsewhere).
#
#   scripts/build_base_image.sh            # builds passos-base:bookworm unless it exists
#   scripts/build_base_image.sh --force    # rebuild
#
# Needs root, debootstrap and a running Docker daemon. Environment:
#   BASE_TAG        image tag to create (default passos-base:bookworm)
#   DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail

BASE_TAG="${BASE_TAG:-passos-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates

force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { echo "[build_base_image] $*" >&2; }

if [[ $force -eq 0 ]] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    log "$BASE_TAG exists (use --force to rebuild)"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    log "debootstrap needs root"
    exit 1
fi
command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 1; }

rootfs="$(mktemp -d /tmp/passos-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

started=$(date +%s)
log "debootstrap --variant=minbase $SUITE into $rootfs from $DEBIAN_MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >&2

# What a container image does not need: package caches, indexes, docs and man pages.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
# The security updates, as the official Debian images have them (used by apt in derived images).
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $SUITE-security main
SOURCES

log "importing as $BASE_TAG"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/usr/bin/python3"]' \
    - "$BASE_TAG" >/dev/null
log "built $BASE_TAG in $(( $(date +%s) - started )) s: $(docker image inspect -f '{{.Size}}' "$BASE_TAG" | numfmt --to=iec) ($(docker run --rm "$BASE_TAG" python3 --version))"
