# The SMTP sink of docker-compose.yml: prints every message dispatch sends. aiosmtpd at the
# version requirements.lock pins, in a virtualenv of its own (nothing in the system Python).
# Build arguments as for the Dockerfile at the root: BASE_IMAGE, INDEX_URL, CA_CERT.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
ARG AIOSMTPD_VERSION=1.4.6
ARG INDEX_URL=https://pypi.org/simple
ARG CA_CERT=""
RUN if [ -n "$CA_CERT" ]; then printf '%s\n' "$CA_CERT" > /usr/local/share/ca-certificates/site.crt \
      && update-ca-certificates; fi \
 && python3 -m venv /opt/sink \
 && /opt/sink/bin/pip install --no-cache-dir --index-url "${INDEX_URL}" \
      --cert /etc/ssl/certs/ca-certificates.crt "aiosmtpd==${AIOSMTPD_VERSION}"
ENV PATH=/opt/sink/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
CMD ["python", "-m", "aiosmtpd", "-n", "-l", "0.0.0.0:1025"]
