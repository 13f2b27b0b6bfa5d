#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft: broker+controller in one JVM) on loopback for
# tests and CI. The jars come from Maven Central via `mvn` (scripts/kafka/pom.xml) and live, with
# the broker's config, data, log and pid, under the ignored .cache/kafka/.
#
#   scripts/kafka.sh start    fetch jars if missing, format storage once, start, wait until the
#                             broker serves metadata (<= 90 s); already running: just confirm it
#   scripts/kafka.sh stop     SIGTERM (controlled shutdown), bounded wait, then SIGKILL
#   scripts/kafka.sh status   exit 0 if up and serving metadata, 1 if running but not serving,
#                             3 if not running
#
# Env: APICAT_TEST_KAFKA_PORT (19092), APICAT_TEST_KAFKA_CONTROLLER_PORT (19093),
#      KAFKA_HEAP_OPTS (-Xmx512m -Xms256m).
set -euo pipefail
cd "$(dirname "$0")/.."

root=.cache/kafka
lib=$root/lib
data=$root/data
pom=scripts/kafka/pom.xml
config=$root/server.properties
log4j_config=$root/log4j2.properties
log_file=$root/broker.log
pid_file=$root/broker.pid
port=${APICAT_TEST_KAFKA_PORT:-19092}
controller_port=${APICAT_TEST_KAFKA_CONTROLLER_PORT:-19093}
heap_opts=${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
start_timeout=90
stop_timeout=30

say() { echo "kafka: $*"; }
fail() {
  echo "kafka: ERROR: $*" >&2
  if [ -s "$log_file" ]; then
    echo "kafka: errors in $log_file:" >&2
    grep -E '^\[[^]]*\] (ERROR|FATAL)' "$log_file" | head -n 10 | cut -c1-400 >&2 || true
    echo "kafka: last lines of $log_file:" >&2
    tail -n 25 "$log_file" | cut -c1-400 >&2
  fi
  exit 1
}

# The pid in broker.pid, if that process is alive and is our broker (guards against pid reuse).
running_pid() {
  local pid
  [ -f "$pid_file" ] || return 1
  pid=$(cat "$pid_file" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

# Does a Kafka broker on 127.0.0.1:$1 answer a Metadata request listing itself with an active
# controller? Stdlib only (no venv needed): Metadata v4 request, parse the broker list.
serves_metadata() {
  python3 - "$1" <<'PY'
import socket, struct, sys

port = int(sys.argv[1])
client_id = b"apicat-kafka-sh"
# Request header v1 (api_key=3 Metadata, api_version=4, correlation_id, client_id),
# body v4: topics=[] (none, just brokers), allow_auto_topic_creation=false.
body = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id + struct.pack(">i?", 0, False)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.settimeout(3)
        sock.sendall(struct.pack(">i", len(body)) + body)

        def read(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = sock.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            return buf

        (size,) = struct.unpack(">i", read(4))
        resp = read(size)
except (OSError, ConnectionError):
    sys.exit(1)
pos = 0

def take(fmt: str):
    global pos
    vals = struct.unpack_from(fmt, resp, pos)
    pos += struct.calcsize(fmt)
    return vals

def string() -> str | None:
    global pos
    (n,) = take(">h")
    if n < 0:
        return None
    s = resp[pos : pos + n].decode()
    pos += n
    return s

correlation_id, _throttle, n_brokers = take(">iii")
ports = []
for _ in range(n_brokers):
    _node_id, = take(">i")
    string()
    (p,) = take(">i")
    string()
    ports.append(p)
string()  # cluster_id
(controller_id,) = take(">i")
sys.exit(0 if correlation_id == 7 and port in ports and controller_id >= 0 else 1)
PY
}

fetch_jars() {
  local stamp=$lib/.pom.sha256 want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  command -v mvn >/dev/null 2>&1 || fail "mvn not found (apt-get install maven)"
  say "fetching the broker jars from Maven Central into $lib (first run only) ..."
  rm -rf "$lib" "$lib.tmp"
  if ! mvn -q -B -f "$pom" -Dmaven.repo.local="$PWD/.cache/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$PWD/$lib.tmp" \
    >"$root/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$root/mvn.log" >&2
    fail "mvn could not fetch the Kafka jars (output above, in $root/mvn.log)"
  fi
  echo "$want" >"$lib.tmp/.pom.sha256"
  mv "$lib.tmp" "$lib"
}

write_config() {
  mkdir -p "$data"
  cat >"$config" <<EOF
# Written by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$PWD/$data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$log4j_config" <<'EOF'
# Written by scripts/kafka.sh: everything to stdout, which the script sends to broker.log.
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
# The full config dumps (hundreds of lines per start) and per-partition state changes.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
EOF
}

# shellcheck disable=SC2206  # KAFKA_HEAP_OPTS is a list of JVM flags
jvm=(java $heap_opts -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$PWD/$log4j_config" -cp "$PWD/$lib/*")

format_storage() {
  if [ -f "$data/meta.properties" ]; then
    return
  fi
  local cluster_id
  # A random Kafka Uuid (what `StorageTool random-uuid` prints), without a second JVM start.
  cluster_id=$(python3 -c 'import base64, uuid
print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))') \
    || fail "could not generate a cluster id"
  say "formatting $data (cluster id $cluster_id)"
  "${jvm[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$config" \
    >"$root/format.log" 2>&1 || { cat "$root/format.log" >&2; fail "formatting $data failed"; }
}

wait_until_serving() {
  local pid=$1 deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if serves_metadata "$port"; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "the broker (pid $pid) exited during startup"
    sleep 0.5
  done
  echo "kafka: the broker (pid $pid) did not serve metadata within ${start_timeout}s; stopping it" >&2
  stop >&2
  fail "the broker did not serve metadata on 127.0.0.1:$port within ${start_timeout}s"
}

start() {
  local pid started=$SECONDS
  if pid=$(running_pid); then
    wait_until_serving "$pid"
    say "already running (pid $pid), serving on 127.0.0.1:$port"
    return
  fi
  rm -f "$pid_file"
  if serves_metadata "$port"; then
    fail "another Kafka broker (not started by this script) already serves 127.0.0.1:$port"
  fi
  command -v java >/dev/null 2>&1 || fail "java not found (apt-get install default-jre-headless)"
  fetch_jars
  write_config
  format_storage
  [ ! -f "$log_file" ] || mv -f "$log_file" "$log_file.1"
  # setsid: its own session, so Ctrl-C in the calling terminal or make does not take it down.
  # 9>&-: the broker must not inherit (and so hold) the start/stop lock.
  setsid "${jvm[@]}" kafka.Kafka "$PWD/$config" </dev/null >"$log_file" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$pid_file"
  say "starting broker (pid $pid), log $log_file"
  wait_until_serving "$pid"
  say "up on 127.0.0.1:$port after $((SECONDS - started))s (pid $pid)"
}

stop() {
  local pid deadline
  if ! pid=$(running_pid); then
    rm -f "$pid_file"
    say "not running"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid still alive after ${stop_timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  fi
  rm -f "$pid_file"
  say "stopped (pid $pid)"
}

status() {
  local pid
  if ! pid=$(running_pid); then
    say "not running"
    exit 3
  fi
  if serves_metadata "$port"; then
    say "up (pid $pid) on 127.0.0.1:$port"
  else
    say "running (pid $pid) but not serving metadata on 127.0.0.1:$port"
    exit 1
  fi
}

mkdir -p "$root"
# One start/stop at a time (make services may run from several shells in this tree).
exec 9>"$root/.lock"
flock -w $((start_timeout + stop_timeout + 300)) 9 || fail "timed out waiting for $root/.lock"

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
