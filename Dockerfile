# Minimal for now; the operations issue completes it (base image as a build argument, healthcheck).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY passos passos
COPY flows flows
COPY features features
COPY warehouse warehouse
COPY serving serving
COPY modeling modeling
COPY monitoring monitoring
COPY deployments deployments
RUN pip install --no-cache-dir -c constraints.txt . && useradd --create-home passos
USER passos
ENV PASSOS_HOME=/home/passos/var
ENTRYPOINT ["passos"]
CMD ["--help"]
