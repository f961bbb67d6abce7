#!/bin/sh
# Container entrypoint: runs the given command (default: the API) as is, except that the API
# refuses to start without an API key unless PASSOS_ALLOW_NO_API_KEY=1 says that is intended.
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

mkdir -p "${PASSOS_HOME:-/var/lib/passos}" "${PREFECT_HOME:-/var/lib/passos/prefect}"
exec "$@"
