# The passos image: the API by default; the same image runs the pipeline, the Prefect server and
# a Prefect worker (any command given to `docker run` replaces the default one).
#
#   docker build -t passos .                                                # on python:3.11-slim
#   docker build --build-arg BASE_IMAGE=passos-base:bookworm -t passos .   # scripts/build_base_image.sh
#   docker run -e PASSOS_API_KEY=... -v passos-home:/var/lib/passos -p 8000:8000 passos
#   docker run -v passos-home:/var/lib/passos -v "$PWD/data:/data:ro" passos passos run
#
# Works with the classic builder and BuildKit alike (no RUN --mount, no syntax directive, so no
# frontend image is pulled). The base needs only python3 3.11 with venv, CA certificates and apt:
# python:3.11-slim, or Debian bookworm (what scripts/build_base_image.sh makes).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
# PIP_INDEX_URL: a mirror, where PyPI is not to be used directly. EXTRA_CA_CERTS: PEM text of CA
# certificates pip must trust on a network that intercepts TLS (public certificates, seen by
# this stage only). Both are for the build; neither reaches the final image.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG EXTRA_CA_CERTS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PIP_CERT=/etc/pip-ca.pem
RUN cat /etc/ssl/certs/ca-certificates.crt > /etc/pip-ca.pem \
    && printf '%s\n' "$EXTRA_CA_CERTS" >> /etc/pip-ca.pem \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install -q --upgrade pip
WORKDIR /src
# The dependencies alone, from pyproject.toml and pinned by constraints.txt (no dev extras), in
# a venv that changes only when those two files do; the libraries' own test suites are dropped
# (only for packages whose `tests` is not importable API: evidently's is).
COPY pyproject.toml constraints.txt ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -q -c constraints.txt -r /tmp/requirements.txt \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && for pkg in pandas numpy scipy sklearn pyarrow matplotlib statsmodels; do \
           if [ -d "$site/$pkg" ]; then find "$site/$pkg" -depth -type d -name tests -exec rm -rf {} +; fi; \
       done
# The project as a wheel, installed in the final stage: a code change rebuilds a small layer,
# not the 1 GB one of the dependencies.
COPY README.md ./
COPY cli cli
COPY passos passos
COPY flows flows
COPY features features
COPY warehouse warehouse
COPY serving serving
COPY modeling modeling
COPY monitoring monitoring
COPY deployments deployments
RUN /opt/venv/bin/pip wheel -q --no-deps -w /wheels .
# Marks this stage's image, which the classic builder leaves untagged: scripts/docker_smoke.sh
# keeps the newest (the dependency cache) and deletes older ones.
LABEL passos.stage="builder"

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="passos" \
      org.opencontainers.image.description="Passos Mágicos early warning: API, pipeline and Prefect worker"
# LightGBM needs the OpenMP runtime, which neither python:3.11-slim nor minimal Debian has.
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
COPY --from=builder /wheels /tmp/wheels
# Fail the build, not the first request, when a runtime library is missing.
RUN /opt/venv/bin/pip install -q --no-deps --no-index --no-cache-dir --disable-pip-version-check /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && /opt/venv/bin/pip check --disable-pip-version-check \
    && cd / && PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c \
        "import serving.app, flows.pipeline, monitoring.evidently_adapter, lightgbm, asyncpg"
COPY scripts/docker_entrypoint.sh /usr/local/bin/passos-entrypoint
# The Prefect server copies its UI into a static folder at start; the default one is inside the
# installed package, which the passos user cannot write (the UI then answers 404). A folder of
# its own, outside the state volume: a cache, rebuilt when missing or from another version.
RUN install -d -o passos -g passos -m 0755 /var/cache/prefect-ui
ENV PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PASSOS_HOME=/var/lib/passos \
    PASSOS_DATA_DIR=/data \
    PREFECT_HOME=/var/lib/passos/prefect \
    PREFECT_UI_STATIC_DIRECTORY=/var/cache/prefect-ui \
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
