#!/bin/sh
# Starts one Kafka node in KRaft mode, configured as the operator's StatefulSet
# (builders/kafka.py) says: every KAFKA_* variable is a server property, named
# the way the apache/kafka image reads them (KAFKA_LOG_DIRS -> log.dirs; "__"
# stands for "_" and "___" for "-"), so the same pod spec runs on either image.
# CLUSTER_ID formats the log directories the first time; formatted ones are kept.
#
#   stackforge-kafka-start                 render, format if new, exec the broker
#   stackforge-kafka-start --print-config  print the rendered properties, start nothing
set -eu

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
# Written at each start: the pod's settings, never the image's.
CONFIG_FILE=${STACKFORGE_KAFKA_CONFIG:-$KAFKA_HOME/config/server.properties}
LOG4J_CONFIG=${STACKFORGE_KAFKA_LOG4J:-$KAFKA_HOME/config/log4j2.properties}

# KAFKA_* variables that tell the JVM how to run, not the broker what to do
# (the apache/kafka image's scripts read the same ones).
JVM_VARIABLES=" KAFKA_HOME KAFKA_HEAP_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_OPTS \
KAFKA_GC_LOG_OPTS KAFKA_LOG4J_OPTS KAFKA_JMX_OPTS KAFKA_DEBUG KAFKA_VERSION "
NEWLINE='
'

die() {
  echo "stackforge-kafka-start: $*" >&2
  exit 1
}

# KAFKA_LOG_DIRS -> log.dirs, KAFKA_LISTENER_NAME_X___Y -> listener.name.x-y,
# KAFKA_A__B -> a_b ("%" holds "__" meanwhile: no variable name has one).
property_name() {
  printf '%s\n' "${1#KAFKA_}" | tr '[:upper:]' '[:lower:]' \
    | sed -e 's/___/-/g' -e 's/__/%/g' -e 's/_/./g' -e 's/%/_/g'
}

# The names of the KAFKA_* variables, sorted. A line of a multi-line value can
# look like an assignment: only names the shell really has are kept.
kafka_variables() {
  env | sed -n 's/^\(KAFKA_[A-Za-z0-9_]*\)=.*/\1/p' | LC_ALL=C sort -u \
    | while read -r variable; do
        eval "[ -n \"\${$variable+set}\" ]" && printf '%s\n' "$variable"
      done
}

render_properties() {
  echo "# Rendered by stackforge-kafka-start from the pod's KAFKA_* environment."
  for variable in $(kafka_variables); do
    case $JVM_VARIABLES in *" $variable "*) continue ;; esac
    value=
    eval "value=\${$variable}"
    case $value in *"$NEWLINE"*) die "$variable holds a line break; a property is one line" ;; esac
    # A properties file reads a backslash as an escape: keep it literal.
    printf '%s=%s\n' "$(property_name "$variable")" \
      "$(printf '%s\n' "$value" | sed 's/\\/\\\\/g')"
  done
}

require() {
  for variable in "$@"; do
    eval "[ -n \"\${$variable:-}\" ]" \
      || die "$variable is not set; the operator's StatefulSet sets it"
  done
}

main() {
  require KAFKA_NODE_ID KAFKA_PROCESS_ROLES KAFKA_LOG_DIRS
  if [ "${1:-}" = --print-config ]; then
    render_properties
    return
  fi
  [ $# -eq 0 ] || die "unknown argument $1 (only --print-config)"
  require CLUSTER_ID

  properties=$(render_properties)
  printf '%s\n' "$properties" > "$CONFIG_FILE"
  # Options below are lists of words: split them, but never expand a glob.
  set -f
  old_ifs=$IFS
  IFS=,
  for directory in $KAFKA_LOG_DIRS; do
    mkdir -p "$directory"
  done
  IFS=$old_ifs

  classpath="$KAFKA_HOME/libs/*"
  logging="-Dlog4j2.configurationFile=$LOG4J_CONFIG"
  # A directory formatted by an earlier start keeps its data and its cluster id;
  # one of another cluster makes the broker refuse to start, as it should.
  java "$logging" -cp "$classpath" kafka.tools.StorageTool format \
    --cluster-id "$CLUSTER_ID" --config "$CONFIG_FILE" --ignore-formatted

  # Half the container's memory for the heap: the rest is the page cache Kafka
  # reads and writes through.
  heap=${KAFKA_HEAP_OPTS:--XX:MaxRAMPercentage=50.0 -XX:InitialRAMPercentage=25.0}
  jvm=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
-XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}
  # shellcheck disable=SC2086 # each option variable is a list of words
  exec java $heap $jvm "$logging" ${KAFKA_OPTS:-} -cp "$classpath" kafka.Kafka "$CONFIG_FILE"
}

main "$@"
