# A stand-in for the public postgres image, for docker-compose.yml on a machine without Docker
# Hub: Debian's PostgreSQL server, a cluster created on the first start from POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB in PGDATA (the compose file's volume), as that image does.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
COPY postgres_entrypoint.py /usr/local/bin/entrypoint.py
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["python3", "/usr/local/bin/entrypoint.py"]
