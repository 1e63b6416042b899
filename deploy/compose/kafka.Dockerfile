# A stand-in for the public apache/kafka image, for docker-compose.yml on a machine without
# Docker Hub: Debian's JRE and the project's own Kafka jars (`make jars`), configured from KAFKA_*
# variables as that image is (KAFKA_NODE_ID -> node.id, ...), storage formatted on first start.
# Built by `python -m deploy.compose images` from a context it assembles (the jars, the scripts).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 1000 --home-dir /nonexistent --shell /usr/sbin/nologin appuser \
 && mkdir -p /var/lib/kafka/data \
 && chown appuser /var/lib/kafka/data
COPY libs /opt/kafka/libs
COPY kafka_entrypoint.py /opt/kafka/entrypoint.py
COPY kafka-broker-api-versions.sh /opt/kafka/bin/kafka-broker-api-versions.sh
USER 1000
ENTRYPOINT ["python3", "/opt/kafka/entrypoint.py"]
