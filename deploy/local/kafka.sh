#!/usr/bin/env bash
# Run one real Apache Kafka broker (KRaft: broker + controller in one JVM) on 127.0.0.1.
#
#   deploy/local/kafka.sh start|stop|status
#
# Environment:
#   KAFKA_PORT        client port (default 9092); the controller listens on KAFKA_PORT+1
#   KAFKA_DATA_DIR    logs, config, pid file (default ~/.orbitwatch/kafka)
#   KAFKA_JARS_DIR    jar cache (default ~/.cache/orbitwatch/kafka-jars); filled from Maven Central by mvn
#
# `start` prints the bootstrap address (127.0.0.1:PORT) as its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${KAFKA_PORT:-9092}"
ctl_port=$((port + 1))
data="${KAFKA_DATA_DIR:-$HOME/.orbitwatch/kafka}"
jars="${KAFKA_JARS_DIR:-$HOME/.cache/orbitwatch/kafka-jars}"
pidfile="$data/kafka.pid"

log() { echo "kafka.sh: $*" >&2; }

fetch_jars() {
  if [ -f "$jars/.complete" ]; then return; fi
  log "resolving Apache Kafka jars from Maven Central into $jars (first run only)"
  mkdir -p "$jars"
  mvn -q -B -f "$here/kafka-pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$jars" -DincludeScope=runtime >&2
  touch "$jars/.complete"
}

# A KRaft cluster id is 16 random bytes, base64url without padding (22 chars). One starting with
# '-' would be read by StorageTool's argument parser as an option, so draw again until it does not.
cluster_id() {
  local id
  while :; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' | cut -c1-22)
    [ "${id:0:1}" != "-" ] && { echo "$id"; return; }
  done
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

start() {
  if running; then log "already running (pid $(cat "$pidfile"))"; echo "127.0.0.1:$port"; return; fi
  fetch_jars
  mkdir -p "$data/logs"
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
PROPS
  cat > "$data/log4j2.properties" <<PROPS
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=FILE
appender.file.type=File
appender.file.name=FILE
appender.file.fileName=$data/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
PROPS
  local cp="$jars/*"
  local jopts=(-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
               "-Dlog4j2.configurationFile=$data/log4j2.properties")
  if [ ! -f "$data/logs/meta.properties" ]; then
    # Static quorum (controller.quorum.voters), so no --standalone.
    java "${jopts[@]}" -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cluster_id)" -c "$data/server.properties" >&2
  fi
  nohup java "${jopts[@]}" -cp "$cp" kafka.Kafka "$data/server.properties" \
      > "$data/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if answers; then log "started (pid $(cat "$pidfile"))"; echo "127.0.0.1:$port"; return; fi
    if ! running; then log "broker exited; see $data/stdout.log and $data/server.log"; tail -20 "$data/stdout.log" >&2; exit 1; fi
    sleep 0.5
  done
  log "broker did not answer on 127.0.0.1:$port within 60 s"; exit 1
}

stop() {
  if ! running; then log "not running"; rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; log "stopped"; return; }; sleep 0.5; done
  log "broker did not stop in 30 s; killing"; kill -9 "$pid" 2>/dev/null || true; rm -f "$pidfile"
}

status() {
  if running && answers; then echo "running pid $(cat "$pidfile") on 127.0.0.1:$port"; else echo "stopped"; exit 3; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
