#!/usr/bin/env bash
# A local Prefect server (SQLite under $PASSOS_HOME/prefect) and the passos deployments, served by
# one process. Prints the UI address; Ctrl-C stops both. Used by `make prefect`.
#
#   PASSOS_HOME   state root (default ./var)            PREFECT_PORT   port (default 4200)
#   PREFECT_HOME  Prefect's home (default $PASSOS_HOME/prefect)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
HOST=127.0.0.1
PORT="${PREFECT_PORT:-4200}"
START_TIMEOUT_S="${PREFECT_START_TIMEOUT_S:-120}"

export PASSOS_HOME="${PASSOS_HOME:-$ROOT/var}"
export PREFECT_HOME="${PREFECT_HOME:-$PASSOS_HOME/prefect}"
export PREFECT_API_URL="http://$HOST:$PORT/api"
export PREFECT_API_DATABASE_CONNECTION_URL="${PREFECT_API_DATABASE_CONNECTION_URL:-sqlite+aiosqlite:///$PREFECT_HOME/prefect.db}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=1
mkdir -p "$PREFECT_HOME"

server_pid=""
serve_pid=""
stopped=""

stop() {
    [[ -n "$stopped" ]] && return
    stopped=1
    echo "stopping..."
    # the serve process first, so that its flow runs are marked cancelled while the API is up
    for pid in $serve_pid $server_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "stopped"
}
trap stop EXIT
# Ctrl-C (or SIGTERM) is how this script is meant to end: a clean stop exits 0, so that
# `make prefect` does not end with "make: *** [prefect] Error 130".
trap 'stop; exit 0' INT TERM

healthy() { curl -sf --max-time 2 "$PREFECT_API_URL/health" >/dev/null 2>&1; }

if healthy; then
    echo "a Prefect server already answers on $HOST:$PORT: using it (and leaving it running)"
else
    echo "starting the Prefect server on $HOST:$PORT (log: $PREFECT_HOME/server.log)"
    "$BIN/prefect" server start --host "$HOST" --port "$PORT" --analytics-off >"$PREFECT_HOME/server.log" 2>&1 &
    server_pid=$!
    waited=0
    until healthy; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "the Prefect server exited; last lines of its log:" >&2
            tail -n 20 "$PREFECT_HOME/server.log" >&2
            exit 1
        fi
        if ((waited >= START_TIMEOUT_S)); then
            echo "the Prefect server did not answer within ${START_TIMEOUT_S}s (see $PREFECT_HOME/server.log)" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "the Prefect server is up after ${waited}s"
fi

echo "registering and serving the deployments (log: $PREFECT_HOME/serve.log)"
"$BIN/passos" deploy >"$PREFECT_HOME/serve.log" 2>&1 &
serve_pid=$!

echo
echo "  Prefect UI:   http://$HOST:$PORT"
echo "  deployments:  http://$HOST:$PORT/deployments"
echo "  state:        PASSOS_HOME=$PASSOS_HOME"
echo "  Ctrl-C stops the server and the deployments."
echo

# returns when the serve process ends (or a signal arrives: then the trap stops everything)
status=0
wait "$serve_pid" || status=$?
echo "the serve process exited with status $status; last lines of its log:" >&2
tail -n 20 "$PREFECT_HOME/serve.log" >&2
exit "$status"
