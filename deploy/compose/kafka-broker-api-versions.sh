#!/bin/sh
# what the compose healthcheck calls, as in the apache/kafka image
exec java -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
