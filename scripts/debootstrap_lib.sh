# shellcheck shell=bash
# Shared by scripts/build_base_image.sh and scripts/build_postgres_image.sh: a container image
# made from Debian packages alone, without any container registry. debootstrap a minimal root
# file system from the Debian mirror, strip what an image does not need, `docker import` it.
#
# Source it, then: debootstrap_rootfs DIR PACKAGES; (adjust DIR); slim_rootfs DIR;
# import_rootfs DIR TAG [--change INSTRUCTION ...]. Needs root, debootstrap and a Docker daemon.
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian).

DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"

# require_debootstrap: fail with a message when this machine cannot run debootstrap.
require_debootstrap() {
    if [[ $(id -u) -ne 0 ]]; then
        log "debootstrap needs root"
        exit 1
    fi
    command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 1; }
}

# debootstrap_rootfs DIR PACKAGES: minbase Debian plus PACKAGES (comma-separated) and their
# dependencies into DIR.
debootstrap_rootfs() {
    local rootfs="$1" packages="$2"
    log "debootstrap --variant=minbase $DEBIAN_SUITE (+ $packages) into $rootfs from $DEBIAN_MIRROR"
    debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >&2
}

# slim_rootfs DIR: drop package caches, indexes, docs and man pages; write the apt sources
# (with the security updates, as the official Debian images have them) for derived images.
slim_rootfs() {
    local rootfs="$1"
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
    cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $DEBIAN_SUITE-security main
SOURCES
}

# import_rootfs DIR TAG [--change INSTRUCTION ...]: the folder as a one-layer image.
import_rootfs() {
    local rootfs="$1" tag="$2"
    shift 2
    log "importing as $tag"
    tar -C "$rootfs" -c . | docker import "$@" - "$tag" >/dev/null
}

# image_size TAG: the image's size, e.g. 176M.
image_size() {
    docker image inspect -f '{{.Size}}' "$1" | numfmt --to=iec
}
