#!/bin/sh
# The Kafka command-line tools an operator on call reaches for with kubectl
# exec, under the names the Kafka distribution gives them: this one file is
# installed under each name, and the name picks the tool.
set -eu

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
case "$(basename "$0")" in
  kafka-console-producer) tool=org.apache.kafka.tools.ConsoleProducer ;;
  kafka-console-consumer) tool=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  kafka-topics) tool=org.apache.kafka.tools.TopicCommand ;;
  kafka-consumer-groups) tool=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  kafka-metadata-quorum) tool=org.apache.kafka.tools.MetadataQuorumCommand ;;
  *) echo "kafka-tools: installed under an unknown name: $0" >&2; exit 2 ;;
esac
# Tools log warnings only: their output is what the person asked for.
exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties" -Dstackforge.log.level=warn \
  -cp "$KAFKA_HOME/libs/*" "$tool" "$@"
