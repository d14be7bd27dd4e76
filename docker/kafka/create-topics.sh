#!/bin/bash
# Creates Lookout's topics on the compose Kafka (run once by the `kafka-init` service).
# Input topics get $PARTITIONS partitions: the most workers that can share one modality.
# Idempotent (--if-not-exists), so it runs on every `docker compose up`.
# REPLICATION (default 1: the compose file runs one broker) and MIN_INSYNC (unset: the
# broker's default) match LOOKOUT_REPLICATION_FACTOR / LOOKOUT_MIN_INSYNC_REPLICAS; on a
# cluster of three or more brokers use 3 and 2.
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
PARTITIONS="${PARTITIONS:-12}"
PREFIX="${PREFIX:-lookout}"
REPLICATION="${REPLICATION:-1}"
MIN_INSYNC="${MIN_INSYNC:-}"
TOPICS=/opt/kafka/bin/kafka-topics.sh

create() {
  local topic="$1" partitions="$2"
  shift 2
  if [ -n "$MIN_INSYNC" ]; then
    set -- "$@" --config "min.insync.replicas=$MIN_INSYNC"
  fi
  "$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$REPLICATION" "$@"
}

day_ms=86400000
for name in frames audio logs; do
  create "$PREFIX.$name" "$PARTITIONS" --config "retention.ms=$day_ms"
done
create "$PREFIX.deadletter" "$PARTITIONS" --config "retention.ms=$((7 * day_ms))"
create "$PREFIX.alerts" "$PARTITIONS" --config "retention.ms=$((30 * day_ms))"
# Standing queries: one compacted partition, read in full by every worker.
create "$PREFIX.queries" 1 --config cleanup.policy=compact

"$TOPICS" --bootstrap-server "$BOOTSTRAP" --describe \
  --topic "$PREFIX.frames,$PREFIX.audio,$PREFIX.logs,$PREFIX.deadletter,$PREFIX.alerts,$PREFIX.queries" \
  | grep -v "^\s*Topic: .*Partition:" || true
