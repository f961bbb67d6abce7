#!/bin/bash
# Entrypoint of the local Postgres image (scripts/build_postgres_image.sh): the environment
# contract of the official `postgres` image, so docker-compose.yml runs either unchanged.
#
#   POSTGRES_PASSWORD   required on first start (the superuser's password; host logins use
#                       scram-sha-256, the container's own socket is trusted)
#   POSTGRES_USER       the superuser (default postgres)
#   POSTGRES_DB         a database created on first start (default: POSTGRES_USER)
#   PGDATA              the cluster (default /var/lib/postgresql/data, the image's volume)
#   POSTGRES_INITDB_ARGS  extra initdb arguments
#
# On first start (no PG_VERSION in PGDATA) it runs initdb, listens on every address and
# creates the database; then, and on every later start, it execs postgres as PID 1.
# Not supported (unlike the official image): /docker-entrypoint-initdb.d scripts, running as
# root to chown a bind mount (the image runs as the postgres user; use a named volume).
set -euo pipefail

log() { echo "[postgres-entrypoint] $*" >&2; }

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export PGDATA

init_cluster() {
    if [[ -z "${POSTGRES_PASSWORD:-}" ]]; then
        log "the database is not initialised and POSTGRES_PASSWORD is empty: set it"
        exit 1
    fi
    local pwfile
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    log "initdb in $PGDATA (superuser $POSTGRES_USER)"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of arguments
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [[ "$POSTGRES_DB" != postgres ]]; then
        # A server on the socket only, for the set-up; nothing can connect over the network yet.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        psql -v ON_ERROR_STOP=1 -q -v db="$POSTGRES_DB" --username="$POSTGRES_USER" --dbname=postgres \
            <<< 'CREATE DATABASE :"db";'
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        log "created database $POSTGRES_DB"
    fi
}

if [[ "${1:-}" == postgres && ! -s "$PGDATA/PG_VERSION" ]]; then
    init_cluster
fi
exec "$@"
