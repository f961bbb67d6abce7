#!/usr/bin/env bash
# Build a local PostgreSQL image from Debian packages, without any container registry, the way
# scripts/build_base_image.sh builds the base: debootstrap bookworm with postgresql-15, add an
# entrypoint with the official image's environment contract (POSTGRES_PASSWORD, POSTGRES_USER,
# POSTGRES_DB, PGDATA), `docker import` it. For machines that cannot reach Docker Hub, where
# docker-compose.yml's default postgres:16-alpine cannot be pulled: POSTGRES_IMAGE picks it.
#
#   scripts/build_postgres_image.sh            # builds passos-postgres:15-bookworm unless it exists
#   scripts/build_postgres_image.sh --force    # rebuild
#
# Needs root, debootstrap and a running Docker daemon. Environment:
#   POSTGRES_TAG    image tag to create (default passos-postgres:15-bookworm)
#   DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail

cd "$(dirname "$0")/.."
log() { echo "[build_postgres_image] $*" >&2; }
# shellcheck source=scripts/debootstrap_lib.sh
source scripts/debootstrap_lib.sh

POSTGRES_TAG="${POSTGRES_TAG:-passos-postgres:15-bookworm}"
# Debian 12's PostgreSQL. A data volume is tied to its major version: a volume initialised by
# postgres:16 is refused by 15 and the reverse (one volume per image; see docs/deploy.md).
PG_MAJOR=15
PACKAGES="postgresql-$PG_MAJOR"

force=0
[[ "${1:-}" == "--force" ]] && force=1

if [[ $force -eq 0 ]] && docker image inspect "$POSTGRES_TAG" >/dev/null 2>&1; then
    log "$POSTGRES_TAG exists (use --force to rebuild)"
    exit 0
fi
require_debootstrap

rootfs="$(mktemp -d /tmp/passos-pg-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

started=$(date +%s)
debootstrap_rootfs "$rootfs" "$PACKAGES"
# The package's postinst made a "main" cluster owned by the host-style service; the image makes
# its own in PGDATA on first start instead (as the official image does).
rm -rf "$rootfs/etc/postgresql/$PG_MAJOR/main" "$rootfs/var/lib/postgresql/$PG_MAJOR/main"
chroot "$rootfs" /bin/sh -ec '
    install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
'
install -m 0755 scripts/postgres_entrypoint.sh "$rootfs/usr/local/bin/postgres-entrypoint"
slim_rootfs "$rootfs"

import_rootfs "$rootfs" "$POSTGRES_TAG" \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'VOLUME /var/lib/postgresql/data' \
    --change 'USER postgres' \
    --change 'WORKDIR /var/lib/postgresql' \
    --change 'EXPOSE 5432' \
    --change 'ENTRYPOINT ["postgres-entrypoint"]' \
    --change 'CMD ["postgres"]'
# `docker import` takes no STOPSIGNAL: docker-compose.yml sets stop_signal: SIGINT (Postgres's
# fast shutdown, the official image's STOPSIGNAL); plain SIGTERM is a smart shutdown.
log "built $POSTGRES_TAG in $(( $(date +%s) - started )) s: $(image_size "$POSTGRES_TAG") ($(docker run --rm --entrypoint postgres "$POSTGRES_TAG" --version))"
