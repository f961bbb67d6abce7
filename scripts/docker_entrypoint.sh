#!/bin/sh
# Container entrypoint: runs the given command (default: the API) as is, except that the API
# refuses to start without an API key unless PASSOS_ALLOW_NO_API_KEY=1 says that is intended,
# and without a student-id salt (PASSOS_ID_SALT, or the file $PASSOS_HOME/id_salt in the
# volume): a container never hashes ids with the public default salt.
#
#   docker run IMAGE                      -> passos serve --host 0.0.0.0 --port 8000
#   docker run IMAGE passos run           -> the pipeline (any other command runs unchanged)
set -eu

if [ "$#" -eq 0 ]; then
    set -- passos serve --host 0.0.0.0 --port 8000
fi

serves_api=0
if [ "$1" = "passos" ]; then
    for arg in "$@"; do
        case "$arg" in
            serve) serves_api=1; break ;;
            -*|passos) ;;
            *) break ;;  # another subcommand (run, ingest, ...): not the API
        esac
    done
fi

if [ "$serves_api" = 1 ] && [ -z "${PASSOS_API_KEY:-}" ] && [ "${PASSOS_ALLOW_NO_API_KEY:-0}" != "1" ]; then
    echo "passos-entrypoint: PASSOS_API_KEY is empty; refusing to serve the API without a key." >&2
    echo "passos-entrypoint: set PASSOS_API_KEY, or PASSOS_ALLOW_NO_API_KEY=1 to serve it open on purpose." >&2
    exit 64
fi

salt_file="${PASSOS_HOME:-/var/lib/passos}/id_salt"
if [ "$serves_api" = 1 ] && [ -z "${PASSOS_ID_SALT:-}" ] && ! [ -s "$salt_file" ]; then
    echo "passos-entrypoint: PASSOS_ID_SALT is empty and $salt_file does not exist; refusing to serve the API" >&2
    echo "passos-entrypoint: with the public default salt (student hashes would be reversible). Set one, e.g." >&2
    echo "passos-entrypoint:   PASSOS_ID_SALT=\$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" >&2
    exit 64
fi

mkdir -p "${PASSOS_HOME:-/var/lib/passos}" "${PREFECT_HOME:-/var/lib/passos/prefect}"
exec "$@"
