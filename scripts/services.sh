#!/usr/bin/env bash
# Start (or stop) the local services the test suite uses, on private loopback ports, with their
# data under .cache/services. Only services whose binaries are installed are started; `.ci/run`
# installs them first. Writes .cache/services.env for `make test` to source.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.cache/services
env_file=.cache/services.env
redis_port=${APICAT_TEST_REDIS_PORT:-6390}
kafka_port=${APICAT_TEST_KAFKA_PORT:-19092}
mkdir -p "$root"

start_redis() {
  if [ -n "${APICAT_TEST_REDIS_URL:-}" ]; then
    echo "export APICAT_TEST_REDIS_URL=$APICAT_TEST_REDIS_URL" >>"$env_file"
    return
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "services: redis-server not installed (apt-get install redis-server); redis tests will skip" >&2
    return
  fi
  if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    mkdir -p "$root/redis"
    redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
      --dir "$PWD/$root/redis" --pidfile "$PWD/$root/redis/redis.pid" \
      --logfile "$PWD/$root/redis/redis.log" --save '' --appendonly no >/dev/null
    for _ in $(seq 1 50); do
      redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 \
    && echo "export APICAT_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0" >>"$env_file" \
    || echo "services: redis-server did not start; see $root/redis/redis.log" >&2
}

stop_redis() {
  if [ -f "$root/redis/redis.pid" ]; then
    kill "$(cat "$root/redis/redis.pid")" 2>/dev/null || true
    rm -f "$root/redis/redis.pid"
  fi
}

# Kafka: a real single-node KRaft broker from Maven Central jars (scripts/kafka.sh, data under
# .cache/kafka); needs java and mvn.
start_kafka() {
  if [ -n "${APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    echo "export APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS=$APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS" >>"$env_file"
    return
  fi
  if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    echo "services: java/mvn not installed (apt-get install default-jre-headless maven);" \
      "kafka tests will skip (and fail under CI=true)" >&2
    return
  fi
  if scripts/kafka.sh start; then
    echo "export APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port" >>"$env_file"
  else
    echo "services: WARNING: kafka did not start (see .cache/kafka/broker.log);" \
      "kafka tests will skip (and fail under CI=true)" >&2
  fi
}

stop_kafka() {
  scripts/kafka.sh stop || true
}

case "${1:-start}" in
  start)
    : >"$env_file"
    start_redis
    start_kafka
    ;;
  stop)
    stop_redis
    stop_kafka
    rm -f "$env_file"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
