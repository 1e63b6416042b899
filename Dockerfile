# syntax=docker/dockerfile:1
# One image for the four Nurture services; each runs with its own command:
#   nurture-ingest serve | nurture-scoring worker | nurture-orchestrator serve | nurture-dispatch serve
# plus the one-off commands (nurture-orchestrator migrate, nurture-dispatch migrate, nurture-topics).
#
#   docker build -t nurture:0.1.0 .          # the runtime image (no dev tools)
#   docker build --target dev -t nurture-dev .  # plus pytest, aiosmtpd, ... (local use only)
#   docker run --rm nurture:0.1.0 nurture-ingest --help

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_VERSION=0.13.9

# --- build: the runtime dependencies (requirements-runtime.lock, hashes checked), the project --
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1
# compilers only here, for any dependency without a wheel for this platform
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m pip install "uv==${UV_VERSION}" \
 && python -m venv /opt/nurture
WORKDIR /src
COPY requirements-runtime.lock ./
RUN uv pip sync --python /opt/nurture/bin/python --require-hashes requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
RUN uv pip install --python /opt/nurture/bin/python --no-deps . \
 && /opt/nurture/bin/nurture-ingest --help >/dev/null

# --- build-dev: the same plus the development tools (requirements.lock), for `--target dev` ----
FROM build AS build-dev
COPY requirements.lock ./
RUN uv pip sync --python /opt/nurture/bin/python --require-hashes requirements.lock \
 && uv pip install --python /opt/nurture/bin/python --no-deps .

# --- dev: an image with the test tools (the compose SMTP sink runs aiosmtpd from it) ----------
FROM ${PYTHON_IMAGE} AS dev
COPY --from=build-dev /opt/nurture /opt/nurture
ENV PATH=/opt/nurture/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001

# --- runtime: the virtualenv and the default config, no build tools, a numeric non-root user --
FROM ${PYTHON_IMAGE} AS runtime
# the source revision this image is built from (e.g. --build-arg REVISION=$(git rev-parse HEAD)):
# an OCI label, and `nurture_build_info{revision}` on every service's /metrics
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nurture" \
      org.opencontainers.image.description="Kafka-native lead-nurturing pipeline" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 nurture \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nurture
COPY --from=build /opt/nurture /opt/nurture
WORKDIR /app
# the default models, programs, policy and templates (Kubernetes mounts its own from ConfigMaps)
COPY config ./config
ENV PATH=/opt/nurture/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    NURTURE_SCORING_STATE_DIR=/tmp/nurture-scoring \
    NURTURE_BUILD_REVISION=${REVISION}
# the root filesystem may be read-only: everything written goes to /tmp or the state volume
USER 10001:10001
EXPOSE 8080 8081 8082 9102
# each service is started by its own command; this default runs ingest
CMD ["nurture-ingest", "serve"]
