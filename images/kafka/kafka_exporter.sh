#!/bin/sh
# The exporter sidecar's command (/bin/kafka_exporter, where the community
# kafka_exporter image has it): the project's exporter (exporter/), run on the
# broker's own client libraries. The flags pass through unchanged.
#
# The JVM is kept small: the sidecar's memory limit is builders/exporters.py's
# KAFKA_EXPORTER_RESOURCES. Serial GC and no JIT tiers above C1 trade peak
# speed, which a scrape a few times a minute does not need, for footprint; no
# perf data file, since the sidecar's root filesystem is read-only.
set -eu

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
exec java -XX:+UseSerialGC -XX:MaxRAMPercentage=40.0 -XX:TieredStopAtLevel=1 \
  -XX:-UsePerfData -Xss512k -XX:ReservedCodeCacheSize=24m \
  -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties" -Dstackforge.log.level=warn \
  -cp "$KAFKA_HOME/exporter/kafka-exporter.jar:$KAFKA_HOME/libs/*" \
  io.stackforge.kafka.KafkaExporter "$@"
