#!/usr/bin/env bash
# The whole docker-compose.yml, end to end (make compose-smoke; not part of make test):
# build the images (no registry needed: local Debian base and Postgres), bring the stack up with
# REPLICAS API containers, register the deployments on the worker's pool, run the pipeline
# deployment through the worker, check that every API replica hot-reloads the new champions and
# answers and that the Prefect UI renders, then tear everything down (containers, network, volumes).
# A check that fails names its cause: the state, exit code and last log lines of the service.
#
#   scripts/compose_smoke.sh
#   KEEP=1 scripts/compose_smoke.sh        # leave the stack up for a look (then: see the last log line)
#
# Environment:
#   IMAGE            our image (default passos:local), built with scripts/docker_smoke.sh build
#   BASE_IMAGE       its base (default passos-base:bookworm, built when missing)
#   POSTGRES_IMAGE   default passos-postgres:15-bookworm, built with scripts/build_postgres_image.sh
#                    when missing; any other name (postgres:16-alpine) is pulled by compose
#   DATA             folder of PEDE files (default ../shared/data beside the project)
#   REPLICAS         API replicas (default 2)
#   COMPOSE          the compose command (default: `docker compose` when present, else docker-compose)
#   KEEP=1           do not tear down
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-passos:local}"
BASE_IMAGE="${BASE_IMAGE:-passos-base:bookworm}"
POSTGRES_IMAGE="${POSTGRES_IMAGE:-passos-postgres:15-bookworm}"
DATA="${DATA:-$(cd .. && pwd)/shared/data}"
REPLICAS="${REPLICAS:-2}"
KEEP="${KEEP:-0}"
PROJECT="passos-compose-smoke-$$"
# serving/schemas.py's FULL_EXAMPLE: every field a student's record has, so a model answers
# with a score (the short example payload may rightly get risk_label "unknown").
PAYLOAD='{"task": "current", "fase": 3, "idade": 13, "genero": "F", "instituicao": "publica", "anos_no_programa": 2, "iaa": 8.0, "ieg": 7.5, "ips": 6.5, "ipp": 7.0, "ida": 5.5, "ipv": 7.2, "mat": 6.0, "por": 5.5, "prev_defasagem": -1}'
SHORT_PAYLOAD='{"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}'
random_token() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
API_KEY="smoke-$(random_token)"

log() { echo "[compose_smoke] $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
since() { echo "$(( $(date +%s) - $1 )) s"; }

if [[ -z "${COMPOSE:-}" ]]; then
    if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
read -r -a COMPOSE_CMD <<< "$COMPOSE"
command -v "${COMPOSE_CMD[0]}" >/dev/null || fail "no $COMPOSE (apt-get install docker-compose, or the compose plugin)"
[[ -d "$DATA" ]] || fail "no data folder at $DATA (set DATA=...)"
[[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || fail "REPLICAS must be a positive integer, not '$REPLICAS'"
DATA="$(cd "$DATA" && pwd)"

ENV_FILE="$(mktemp /tmp/passos-compose-smoke.XXXXXX.env)"
BODY="$(mktemp)"
compose() { "${COMPOSE_CMD[@]}" -p "$PROJECT" --env-file "$ENV_FILE" "$@"; }

teardown() {
    local status=$? started
    if [[ "$KEEP" == 1 ]]; then
        log "kept: project $PROJECT; remove it with: ${COMPOSE} -p $PROJECT --env-file $ENV_FILE down -v"
        rm -f "$BODY"
        return
    fi
    if [[ $status -ne 0 ]]; then
        log "logs of the failed run (last 40 lines per service):"
        compose logs --no-color --tail 40 >&2 2>/dev/null || true
    fi
    started=$(date +%s)
    compose down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || log "compose down failed"
    log "torn down (containers, network, volumes) in $(since "$started")"
    rm -f "$ENV_FILE" "$BODY"
}

# status_of URL [curl args...]: the HTTP status; the body goes to $BODY.
status_of() {
    local url="$1"
    shift
    curl -sS -o "$BODY" -w '%{http_code}' --max-time 10 "$@" "$url" 2>/dev/null || echo 000
}

# wait_for SECONDS COMMAND...: run COMMAND every second until it succeeds; false after SECONDS.
wait_for() {
    local seconds="$1"
    shift
    for _ in $(seq 1 "$seconds"); do
        "$@" && return 0
        sleep 1
    done
    return 1
}

# scored FILE: the /predict answer in FILE has a numeric risk_score and a high/low risk_label.
scored() {
    python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))
sys.exit(not (isinstance(b.get("risk_score"), float) and b.get("risk_label") in ("high", "low")))' "$1"
}
container_healthy() { [[ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" == healthy ]]; }
# why SERVICE: each of its containers' state, exit code, restarts and last log lines, so that a
# failure message names the cause (e.g. the API's exit 64 without a salt) and not only the symptom.
why() {
    local service="$1" id
    for id in $(compose ps -q "$service" 2>/dev/null); do
        docker inspect -f "container {{.Name}}: {{.State.Status}}, exit code {{.State.ExitCode}}, restarted {{.RestartCount}} times{{if .State.Health}}, health {{.State.Health.Status}}{{end}}" "$id" 2>/dev/null
        echo "  its last log lines:"
        docker logs --tail 8 "$id" 2>&1 | sed 's/^/    | /'
    done
}
# URL[i]: replica i's address on the host (a free loopback port each), filled once after up.
declare -a URL
replica_status_is() { [[ "$(status_of "${URL[$1]}$2")" == "$3" ]]; }

all_started=$(date +%s)

# --- 1. images -------------------------------------------------------------------------------
started=$(date +%s)
IMAGE="$IMAGE" BASE_IMAGE="$BASE_IMAGE" scripts/docker_smoke.sh build
if [[ "$POSTGRES_IMAGE" == passos-postgres:* ]]; then
    POSTGRES_TAG="$POSTGRES_IMAGE" scripts/build_postgres_image.sh
fi
log "ok: images $IMAGE and $POSTGRES_IMAGE ready in $(since "$started")"

# --- 2. up -----------------------------------------------------------------------------------
# A temporary env file, so that a .env of the project (secrets, ports) is neither read nor
# changed; host ports are free ones on loopback (empty ports). The API refuses to start without
# a key and a salt: both are random here.
cat > "$ENV_FILE" <<ENV
PASSOS_ENV_FILE=$ENV_FILE
PASSOS_IMAGE=$IMAGE
BASE_IMAGE=$BASE_IMAGE
POSTGRES_IMAGE=$POSTGRES_IMAGE
POSTGRES_USER=prefect
POSTGRES_PASSWORD=$(random_token)
POSTGRES_DB=prefect
PASSOS_API_KEY=$API_KEY
PASSOS_ID_SALT=salt-$(random_token)$(random_token)
PASSOS_API_REPLICAS=$REPLICAS
PUBLISH_ADDRESS=127.0.0.1
PASSOS_API_PORT=
PREFECT_PORT=
HOST_DATA_DIR=$DATA
ENV
log "up: project $PROJECT, $REPLICAS API replicas, Postgres $POSTGRES_IMAGE, data $DATA (read-only)"
trap teardown EXIT
# The env file decides: compose lets the shell's variables override it, so none are inherited.
while IFS='=' read -r name _; do unset "$name"; done < "$ENV_FILE"

started=$(date +%s)
compose up -d --no-build >&2 || fail "compose up failed"
worker="$(compose ps -q worker)"
wait_for 120 container_healthy "$worker" || fail "the worker never turned healthy:
$(why postgres; why prefect-server; why worker)"
log "ok: postgres, prefect-server and worker healthy, in $(since "$started")"

started=$(date +%s)
for i in $(seq 1 "$REPLICAS"); do
    URL[i]="http://$(compose port --index "$i" api 8000 | tail -1)"
    wait_for 60 replica_status_is "$i" /health 200 || fail "API replica $i: /health never answered 200 in 60 s:
$(why api)"
    code="$(status_of "${URL[i]}/ready")"
    [[ "$code" == 503 ]] || fail "API replica $i: /ready answered $code before any model exists, not 503"
done
log "ok: $REPLICAS API replicas: /health 200, /ready 503 (no model yet), in $(since "$started")"

addresses="$(compose exec -T worker python3 -c \
    "import socket; print(len({a[4][0] for a in socket.getaddrinfo('api', 8000)}))")"
[[ "$addresses" == "$REPLICAS" ]] || fail "the name api resolves to $addresses addresses, not $REPLICAS"
log "ok: inside the network the name api resolves to $REPLICAS addresses"

# --- 3. the Prefect UI -------------------------------------------------------------------------
# The page is the UI's index.html (the app's root element and its script); the script it names
# must answer too, or a browser shows a blank page. The server copies the UI into
# PREFECT_UI_STATIC_DIRECTORY at start, which must be writable by the image's user.
PREFECT_URL="http://$(compose port prefect-server 4200 | tail -1)"
code="$(status_of "$PREFECT_URL/" -L -H 'accept: text/html')"
[[ "$code" == 200 ]] || fail "the Prefect UI at $PREFECT_URL/ answered $code, not 200:
$(why prefect-server)"
asset="$(python3 -c 'import re, sys
page = open(sys.argv[1], encoding="utf-8", errors="replace").read()
root = re.search(r"<div id=\"(root|app)\"", page)
script = re.search(r"<script[^>]*type=\"module\"[^>]*src=\"([^\"]+\.js)\"", page)
print(script.group(1) if root and script else "")' "$BODY")"
[[ -n "$asset" ]] || fail "the Prefect UI page has no app root and module script: $(head -c 300 "$BODY")"
code="$(status_of "$PREFECT_URL$asset")"
[[ "$code" == 200 ]] || fail "the Prefect UI's script $asset answered $code, not 200"
log "ok: the Prefect UI renders at $PREFECT_URL/ (index.html with the app root, its script $asset 200 with $(wc -c < "$BODY") bytes)"

# --- 4. a deployment through the worker --------------------------------------------------------
started=$(date +%s)
compose run --rm -T worker passos deploy --work-pool passos-process >&2 || fail "passos deploy failed"
log "ok: deployments registered on the work pool passos-process in $(since "$started")"

started=$(date +%s)
log "run: the pipeline deployment, picked up by the worker"
compose run --rm -T worker prefect deployment run pipeline/pipeline --watch --watch-timeout 900 \
    | tee "$BODY" >&2 || fail "the pipeline deployment's flow run did not complete"
pipeline_done=$(date +%s)
run_id="$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$BODY" | head -1)"
[[ -n "$run_id" ]] || fail "no flow run id in the output of prefect deployment run"
log "ok: flow run $run_id of pipeline/pipeline COMPLETED in $(since "$started") (created, picked up, run)"

# --- 5. every API replica ----------------------------------------------------------------------
# The replicas were not restarted: each finds the new champions by polling the pointers.
for i in $(seq 1 "$REPLICAS"); do
    wait_for 30 replica_status_is "$i" /ready 200 || fail "API replica $i: /ready never 200: $(cat "$BODY")
$(why api)"
done
log "ok: all $REPLICAS replicas /ready 200 (champions hot-reloaded from the shared volume) $(since "$pipeline_done") after the run was reported complete"

# The worker container's output holds the flow run's own log, which names its id. (Read into
# a file first: `grep -q` closing a pipe early would fail the pipeline under pipefail.)
compose logs --no-color worker > "$BODY" 2>/dev/null || fail "cannot read the worker's log"
grep -q "$run_id" "$BODY" || fail "the worker's log does not mention flow run $run_id: it did not run it"
log "ok: the worker container ran it (its log: $(grep -m1 "$run_id" "$BODY" | sed 's/^[^|]*| *//' | cut -c1-160))"

states="$(compose exec -T postgres psql -U prefect -d prefect -tAc \
    "select state_type, count(*) from flow_run group by state_type order by 1" | tr '\n' ' ')"
[[ "$states" == *COMPLETED* && "$states" != *FAILED* && "$states" != *CRASHED* ]] \
    || fail "flow runs in Postgres: $states"
log "ok: flow runs recorded in Postgres: $states"

versions=""
for i in $(seq 1 "$REPLICAS"); do
    url="${URL[i]}"
    status_of "$url/ready" >/dev/null
    log "ok: replica $i ($url) /ready: $(cat "$BODY")"
    models="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["models"])' "$BODY")"
    [[ -z "$versions" || "$versions" == "$models" ]] || fail "replicas serve different models: $versions vs $models"
    versions="$models"

    code="$(status_of "$url/predict" -H 'content-type: application/json' -d "$PAYLOAD")"
    [[ "$code" == 401 ]] || fail "replica $i: /predict without the key answered $code, not 401"
    code="$(status_of "$url/predict" -H 'content-type: application/json' -H "x-api-key: $API_KEY" -d "$PAYLOAD")"
    [[ "$code" == 200 ]] || fail "replica $i: /predict answered $code: $(cat "$BODY")"
    scored "$BODY" || fail "replica $i: /predict gave no numeric risk_score with a high/low label: $(cat "$BODY")"
    log "ok: replica $i /predict 401 without the key, 200 with it: $(cut -c1-160 "$BODY")..."
done
code="$(status_of "${URL[1]}/predict" -H 'content-type: application/json' -H "x-api-key: $API_KEY" -d "$SHORT_PAYLOAD")"
[[ "$code" == 200 ]] || fail "/predict with the short example payload answered $code: $(cat "$BODY")"
log "ok: the short example payload: 200, $(python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); print("risk_label", b["risk_label"], "risk_score", b["risk_score"])' "$BODY")"

# Each replica logs its predictions to files of its own in the shared volume.
log_files() {
    [[ "$(compose exec -T worker sh -c 'ls /var/lib/passos/predictions | grep -c "^predictions-.*\.jsonl$"')" -ge "$REPLICAS" ]]
}
wait_for 15 log_files || fail "fewer than $REPLICAS prediction-log files in the shared volume"
log "ok: $(compose exec -T worker sh -c 'ls /var/lib/passos/predictions | grep -c "^predictions-"') prediction-log files in the shared volume (each replica writes files of its own)"

for i in $(seq 1 "$REPLICAS"); do
    wait_for 60 container_healthy "$(compose ps -q api | sed -n "${i}p")" || fail "API replica $i: HEALTHCHECK never passed"
done
log "ok: the image's HEALTHCHECK reports every API replica healthy"
log "PASS in $(since "$all_started") (teardown follows)"
