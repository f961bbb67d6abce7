# The passos image: the API by default, the same image runs flows and Prefect workers.
#
#   docker build -t passos .                                          # python:3.11-slim base
#   docker build --build-arg BASE_IMAGE=passos-base:bookworm -t passos .   # local base (scripts/build_base_image.sh)
#   docker run -e PASSOS_API_KEY=... -v passos-home:/var/lib/passos -p 8000:8000 passos
#   docker run -v passos-home:/var/lib/passos -v "$PWD/data:/data:ro" passos passos run
#
# Works with the classic builder and BuildKit alike (no RUN --mount, no syntax directive, so no
# frontend image is pulled). The base only needs python3 (3.11) with venv and apt: python:3.11-slim
# or a debootstrapped Debian bookworm.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
# Package index settings for networks that need them; all empty by default (PyPI, system CAs).
# EXTRA_CA_CERTS is PEM text of CA certificates to trust while building (a TLS-intercepting
# proxy): public certificates, and only this stage sees them.
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG EXTRA_CA_CERTS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
WORKDIR /src
RUN python3 -m venv /opt/venv \
    && if [ -n "$EXTRA_CA_CERTS" ]; then \
         cat /etc/ssl/certs/ca-certificates.crt > /etc/pip-ca.pem \
         && printf '%s\n' "$EXTRA_CA_CERTS" >> /etc/pip-ca.pem; \
       fi
# Dependencies first, in their own layer: a change to the code does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN set -e; \
    if [ -f /etc/pip-ca.pem ]; then export PIP_CERT=/etc/pip-ca.pem; fi; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; \
    [ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL; \
    python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt; \
    /opt/venv/bin/pip install -q --upgrade pip; \
    /opt/venv/bin/pip install -q -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY passos passos
COPY flows flows
COPY features features
COPY warehouse warehouse
COPY serving serving
COPY modeling modeling
COPY monitoring monitoring
COPY deployments deployments
# The project itself, without the dev extras; then drop what a runtime never uses: the
# libraries' own test suites (only of packages whose `tests` is not importable API) and pip.
RUN set -e; \
    if [ -f /etc/pip-ca.pem ]; then export PIP_CERT=/etc/pip-ca.pem; fi; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; \
    [ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL; \
    /opt/venv/bin/pip install -q --no-deps -c constraints.txt . ; \
    /opt/venv/bin/pip check; \
    site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    for pkg in pandas numpy scipy sklearn pyarrow matplotlib statsmodels; do \
        if [ -d "$site/$pkg" ]; then find "$site/$pkg" -depth -type d -name tests -exec rm -rf {} +; fi; \
    done; \
    /opt/venv/bin/pip uninstall -q -y pip; \
    rm -rf /src/build

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="passos" \
      org.opencontainers.image.description="Passos Mágicos early warning: API, pipeline and Prefect worker"
# LightGBM needs the OpenMP runtime, which neither python:3.11-slim nor a minimal Debian has.
RUN if ! ldconfig -p | grep -q 'libgomp\.so\.1'; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/passos --no-create-home \
        --shell /usr/sbin/nologin passos \
    && mkdir -p /var/lib/passos/prefect /data \
    && chown -R passos:passos /var/lib/passos
COPY --from=builder /opt/venv /opt/venv
COPY scripts/docker_entrypoint.sh /usr/local/bin/passos-entrypoint
# Fail the build, not the first request, when a runtime library is missing.
RUN cd / && PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c \
    "import serving.app, flows.pipeline, monitoring.evidently_adapter, lightgbm, asyncpg"
ENV PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PASSOS_HOME=/var/lib/passos \
    PASSOS_DATA_DIR=/data \
    PREFECT_HOME=/var/lib/passos/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1
VOLUME ["/var/lib/passos"]
WORKDIR /var/lib/passos
USER passos
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["passos-entrypoint"]
CMD ["passos", "serve", "--host", "0.0.0.0", "--port", "8000"]
