#!/bin/sh
# Demo producer (compose profile `demo`): builds the synthetic scenario with
# `lookout demo-data` and replays every camera, microphone and log file into Kafka in real
# time, all with one base timestamp so events line up with the scenario's truth.json.
# First it registers the scenario's standing queries (patterns.yaml) through a worker's API
# (LOOKOUT_API_URL, LOOKOUT_API_TOKEN), so the replay raises alerts.
set -eu

OUT="${DEMO_DIR:-/tmp/scenario}"
SPEED="${DEMO_SPEED:-1}"
lookout demo-data "$OUT" --seed "${DEMO_SEED:-7}" --size "${DEMO_SIZE:-default}"

tries=0
until lookout query apply "$OUT/patterns.yaml"; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "no worker API answered at ${LOOKOUT_API_URL:-?}" >&2; exit 1; }
  sleep 5
done
BASE_MS="$(($(date +%s) * 1000))"
PIDS=""

for f in "$OUT"/video/*.mp4; do
  lookout produce video "$f" --source "$(basename "$f" .mp4)" --fps 2 \
    --realtime --speed "$SPEED" --ts-base-ms "$BASE_MS" &
  PIDS="$PIDS $!"
done
for f in "$OUT"/audio/*.wav; do
  lookout produce audio "$f" --source "$(basename "$f" .wav)" \
    --realtime --speed "$SPEED" --ts-base-ms "$BASE_MS" &
  PIDS="$PIDS $!"
done
for f in "$OUT"/logs/*.jsonl; do
  lookout produce logs "$f" --source "$(basename "$f" .jsonl)" --offset-field t \
    --realtime --speed "$SPEED" --ts-base-ms "$BASE_MS" &
  PIDS="$PIDS $!"
done
STATUS=0
for pid in $PIDS; do
  wait "$pid" || STATUS=1
done
[ "$STATUS" -eq 0 ] || { echo "a producer failed; see the lines above" >&2; exit 1; }
echo "scenario replayed: see the alerts with 'lookout alerts list' or in Grafana"
