#!/usr/bin/env bash
# Build the image and smoke-test it end to end: the pipeline in one container (data mounted
# read-only, state in a fresh volume, no network), then the API on that volume with a key.
#
#   scripts/docker_smoke.sh build     # only build the image
#   scripts/docker_smoke.sh           # build, then the smoke test (make docker-smoke)
#   scripts/docker_smoke.sh smoke     # the smoke test on an image already built
#
# Environment:
#   IMAGE            tag to build and test (default passos:local)
#   BASE_IMAGE       base image (default python:3.11-slim); a passos-base:* tag that does not
#                    exist yet is built first with scripts/build_base_image.sh (no registry needed)
#   DATA             folder of PEDE files to mount (default ../shared/data beside the project)
#   BUILD_CA_CERTS   PEM file of extra CAs pip must trust inside the build (a TLS-intercepting
#                    proxy). Default: the CAs added on this machine, /usr/local/share/ca-certificates/*.crt
#   PIP_INDEX_URL    a package index for the build, when PyPI is not to be used directly
#   KEEP=1           keep the volume and the API container for a look afterwards
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-passos:local}"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim}"
DATA="${DATA:-$(cd .. && pwd)/shared/data}"
KEEP="${KEEP:-0}"
API_KEY="smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ID_SALT="salt-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# serving/schemas.py's FULL_EXAMPLE: every field a student's record has, so a model answers
# with a score (the short example payload may rightly get risk_label "unknown").
PAYLOAD='{"task": "current", "fase": 3, "idade": 13, "genero": "F", "instituicao": "publica", "anos_no_programa": 2, "iaa": 8.0, "ieg": 7.5, "ips": 6.5, "ipp": 7.0, "ida": 5.5, "ipv": 7.2, "mat": 6.0, "por": 5.5, "prev_defasagem": -1}'
RUN_ID="passos-smoke-$$"
VOLUME="$RUN_ID-home"
API="$RUN_ID-api"

log() { echo "[docker_smoke] $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

build() {
    if [[ "$BASE_IMAGE" == passos-base:* ]] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        BASE_TAG="$BASE_IMAGE" scripts/build_base_image.sh
    fi
    local args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE")
    local ca=""
    if [[ -n "${BUILD_CA_CERTS:-}" ]]; then
        ca="$(cat "$BUILD_CA_CERTS")"
    elif compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        ca="$(cat /usr/local/share/ca-certificates/*.crt)"
    fi
    [[ -n "$ca" ]] && args+=(--build-arg "EXTRA_CA_CERTS=$ca")
    [[ -n "${PIP_INDEX_URL:-}" ]] && args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
    local started before previous
    started=$(date +%s)
    # What a failed build leaves behind is removed: --force-rm takes the step's stopped
    # container with it, and the untagged images it made are deleted below (the layer cache of
    # the steps that succeeded goes with them; the next build redoes them).
    before="$(docker images -q --filter dangling=true | sort)"
    previous="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
    log "building $IMAGE from $BASE_IMAGE${ca:+ (with extra build CAs)}"
    if ! docker build --force-rm "${args[@]}" . >&2; then
        remove_new_dangling "$before"
        fail "docker build of $IMAGE failed (see above); its containers and new untagged images were removed"
    fi
    # The image the tag pointed to before, now untagged: nothing refers to it any more.
    if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]] \
        && [[ -z "$(docker image inspect -f '{{join .RepoTags ""}}' "$previous" 2>/dev/null)" ]]; then
        if docker image rm "$previous" >/dev/null 2>&1; then
            log "removed the previous, now untagged, $IMAGE (${previous:7:12})"
        fi
    fi
    # The classic builder leaves the builder stage as an untagged image (its layers are the
    # dependency cache): the newest is kept, older ones of this Dockerfile are deleted.
    local id removed=0
    for id in $(docker images --filter dangling=true --filter label=passos.stage=builder \
                    --format '{{.CreatedAt}}	{{.ID}}' | sort -r | tail -n +2 | cut -f2); do
        if docker image rm "$id" >/dev/null 2>&1; then removed=$((removed + 1)); fi
    done
    [[ $removed -eq 0 ]] || log "removed $removed older untagged builder-stage image(s)"
    log "built $IMAGE in $(( $(date +%s) - started )) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec)"
}

# remove_new_dangling BEFORE: delete the untagged images that are not in BEFORE (a failed build's).
remove_new_dangling() {
    local id removed=0
    for id in $(comm -13 <(echo "$1") <(docker images -q --filter dangling=true | sort)); do
        if docker image rm "$id" >/dev/null 2>&1; then removed=$((removed + 1)); fi
    done
    log "removed $removed untagged image(s) the failed build left"
}

cleanup() {
    if [[ "$KEEP" == 1 ]]; then
        log "kept: container $API, volume $VOLUME"
        return
    fi
    docker rm -f "$API" >/dev/null 2>&1 || true
    docker volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}

# scored FILE: the /predict answer in FILE has a numeric risk_score and a high/low risk_label.
scored() {
    python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))
sys.exit(not (isinstance(b.get("risk_score"), float) and b.get("risk_label") in ("high", "low")))' "$1"
}

# status_of URL [curl args...]: the HTTP status; the body goes to $RUN_BODY
status_of() {
    local url="$1"
    shift
    curl -sS -o "$RUN_BODY" -w '%{http_code}' --max-time 10 "$@" "$url" || echo 000
}

smoke() {
    [[ -d "$DATA" ]] || fail "no data folder at $DATA (set DATA=...)"
    docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "no image $IMAGE (run: $0 build)"
    trap cleanup EXIT
    RUN_BODY="$(mktemp)"
    local started port url code

    [[ "$(docker run --rm --entrypoint id "$IMAGE" -u)" != 0 ]] || fail "the image runs as root"
    log "ok: runs as a non-root user"

    if docker run --rm "$IMAGE" >/dev/null 2>&1; then
        fail "the API started without PASSOS_API_KEY"
    fi
    log "ok: the API refuses to start without PASSOS_API_KEY"
    if docker run --rm -e PASSOS_API_KEY="$API_KEY" "$IMAGE" >/dev/null 2>&1; then
        fail "the API started without PASSOS_ID_SALT (the public default salt)"
    fi
    log "ok: the API refuses to start without PASSOS_ID_SALT"

    docker volume create "$VOLUME" >/dev/null
    started=$(date +%s)
    log "pipeline: passos run on $DATA (read-only, --network none)"
    # Prefect's temporary server gets 120 s to start instead of 20: on a loaded machine (load
    # average 10 on 2 cores here) it took longer and the run failed before any flow started.
    docker run --rm --network none \
        -v "$VOLUME:/var/lib/passos" -v "$DATA:/data:ro" \
        -e PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120 \
        "$IMAGE" passos run >&2 || fail "passos run failed"
    log "ok: pipeline in $(( $(date +%s) - started )) s"

    started=$(date +%s)
    docker run -d --name "$API" -v "$VOLUME:/var/lib/passos" -e PASSOS_API_KEY="$API_KEY" -e PASSOS_ID_SALT="$ID_SALT" \
        -p 127.0.0.1::8000 --health-interval 2s --health-start-period 5s "$IMAGE" >/dev/null
    port="$(docker port "$API" 8000/tcp | head -1 | sed 's/.*://')"
    url="http://127.0.0.1:$port"
    for _ in $(seq 1 60); do
        code="$(status_of "$url/health")"
        [[ "$code" == 200 ]] && break
        [[ "$(docker inspect -f '{{.State.Running}}' "$API")" == true ]] || { docker logs "$API" >&2; fail "the API exited"; }
        sleep 1
    done
    [[ "$code" == 200 ]] || { docker logs "$API" >&2; fail "/health answered $code"; }
    log "ok: /health 200 after $(( $(date +%s) - started )) s"

    for _ in $(seq 1 30); do
        code="$(status_of "$url/ready")"
        [[ "$code" == 200 ]] && break
        sleep 1
    done
    [[ "$code" == 200 ]] || { cat "$RUN_BODY" >&2; fail "/ready answered $code"; }
    log "ok: /ready 200: $(cat "$RUN_BODY")"

    code="$(status_of "$url/predict" -H 'content-type: application/json' -d "$PAYLOAD")"
    [[ "$code" == 401 ]] || fail "/predict without the key answered $code, not 401"
    log "ok: /predict without the key is 401"

    code="$(status_of "$url/predict" -H 'content-type: application/json' -H "x-api-key: $API_KEY" -d "$PAYLOAD")"
    [[ "$code" == 200 ]] || { cat "$RUN_BODY" >&2; fail "/predict answered $code"; }
    scored "$RUN_BODY" || fail "/predict gave no numeric risk_score with a high/low label: $(cat "$RUN_BODY")"
    log "ok: /predict 200: $(cat "$RUN_BODY")"

    for _ in $(seq 1 30); do
        [[ "$(docker inspect -f '{{.State.Health.Status}}' "$API")" == healthy ]] && break
        sleep 1
    done
    [[ "$(docker inspect -f '{{.State.Health.Status}}' "$API")" == healthy ]] || fail "the HEALTHCHECK never passed"
    log "ok: the image's HEALTHCHECK reports healthy"
    rm -f "$RUN_BODY"
    log "PASS"
}

case "${1:-all}" in
    build) build ;;
    smoke) smoke ;;
    all) build && smoke ;;
    *) echo "usage: $0 [build|smoke|all]" >&2; exit 2 ;;
esac
