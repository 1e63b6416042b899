# One image for the four Nurture services; each runs with its own command:
#   nurture-ingest serve | nurture-scoring worker | nurture-orchestrator serve | nurture-dispatch serve
# plus the one-off commands (nurture-orchestrator migrate, nurture-dispatch migrate, nurture-ops).
#
#   make image                                # this build, with the version and revision stamped
#   docker build -t nurture:0.1.0 .           # the runtime image (the last stage, the default)
#   docker run --rm nurture:0.1.0 nurture-ingest --help
#
# Build arguments for sites without Docker Hub, or behind a mirror or a TLS-inspecting proxy
# (deploy/README.md, "The image"):
#   BASE_IMAGE   any Debian-based image with python3 (3.11) and python3-venv: the default, or one
#                built from Debian's packages by `python -m deploy.image base` (no registry needed)
#   INDEX_URL    a PyPI mirror (simple API)
#   CA_CERT      a PEM certificate (its text) to trust, e.g. the proxy's
#   VERSION, REVISION, SOURCE   OCI labels; REVISION is also `nurture_build_info{revision}`
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# --- build: the runtime dependencies (requirements-runtime.lock, hashes checked), the project --
FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
ARG INDEX_URL=https://pypi.org/simple
ARG CA_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 \
    PIP_INDEX_URL=${INDEX_URL} UV_INDEX_URL=${INDEX_URL} \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1
# a site's CA, trusted through the system store (which pip and uv are told to use above)
RUN if [ -n "$CA_CERT" ]; then printf '%s\n' "$CA_CERT" > /usr/local/share/ca-certificates/site.crt \
      && update-ca-certificates; fi
# uv in a virtualenv of its own, the services in another: nothing goes into the system Python
# (PEP 668), and the services' environment has no pip
RUN python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install "uv==${UV_VERSION}" \
 && python3 -m venv --without-pip /opt/nurture
WORKDIR /src
COPY requirements-runtime.lock ./
RUN /opt/uv/bin/uv pip sync --python /opt/nurture/bin/python --require-hashes requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
RUN /opt/uv/bin/uv pip install --python /opt/nurture/bin/python --no-deps . \
 && /opt/nurture/bin/nurture-ingest --help >/dev/null

# --- runtime: the virtualenv and the default config, no build tools, a numeric non-root user --
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/nurture-project/nurture
LABEL org.opencontainers.image.title="nurture" \
      org.opencontainers.image.description="Kafka-native lead-nurturing pipeline" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
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
