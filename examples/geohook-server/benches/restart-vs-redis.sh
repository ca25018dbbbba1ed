#!/usr/bin/env bash
# Restart time: geohook-server replaying its append-only file against
# redis-server loading its own AOF of the same points, in the same run, with
# `cat` of each file beside it (the rate at which the bytes can be read at
# all, from the page cache as the restarts read them).
#
# Both servers load the same seeded random points (a 2°×2° box, as in
# vs-redis.sh) through `redis-cli --pipe`, with `appendfsync everysec`; Redis
# has the RDB preamble and automatic rewrites off, so that its file is the
# GEOADD commands as written, like geohook's. Both are then stopped with
# SIGTERM and started again, and the time from the process start to
# `SCAN fleet LIMIT <points+1> COUNT` (geohook) or `ZCARD fleet` (redis) answering the full
# count is measured, polling every 10 ms.
#
# Usage: examples/geohook-server/benches/restart-vs-redis.sh [points]
set -euo pipefail
POINTS=${1:-1000000}

source "$(dirname "$0")/common.sh"
# Free ports unless given, so that a port held by another process is never
# mistaken for a started server.
GEO_PORT=${GEO_PORT:-$(free_port)}
REDIS_PORT=${REDIS_PORT:-$(free_port)}

mkdir -p "$WORK/geo" "$WORK/redis"
start_geo() {
  "$BIN" --dir "$WORK/geo" --port "$GEO_PORT" --appendfsync everysec 2>>"$WORK/geo.log" &
  GEO_PID=$!
  PIDS+=("$GEO_PID")
}
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
    --appendonly yes --appendfsync everysec --aof-use-rdb-preamble no \
    --auto-aof-rewrite-percentage 0 --daemonize no >>"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
}
now() { date +%s.%N; }
# Waits until `redis-cli -p port <command…>` prints the expected text.
until_answers() {
  local want=$1 port=$2
  shift 2
  until [ "$(redis-cli -p "$port" "$@" 2>/dev/null)" = "$want" ]; do sleep 0.01; done
}
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

start_geo
start_redis
wait_port "$GEO_PORT"; wait_port "$REDIS_PORT"

python3 "$ROOT/examples/geohook-server/benches/points.py" "$POINTS" "$WORK/geo.cmds" "$WORK/redis.cmds"
redis-cli -p "$GEO_PORT" --pipe <"$WORK/geo.cmds" >/dev/null
redis-cli -p "$REDIS_PORT" --pipe <"$WORK/redis.cmds" >/dev/null
rm -f "$WORK/geo.cmds" "$WORK/redis.cmds"
until_answers "$POINTS" "$GEO_PORT" SCAN fleet LIMIT "$((POINTS + 1))" COUNT
until_answers "$POINTS" "$REDIS_PORT" ZCARD fleet
stop "$GEO_PID"
stop "$REDIS_PID"

GEO_BYTES=$(du -cb "$WORK/geo"/*.aof | tail -1 | cut -f1)
REDIS_BYTES=$(du -cb "$WORK/redis/appendonlydir"/*.aof | tail -1 | cut -f1)

t0=$(now); start_geo; until_answers "$POINTS" "$GEO_PORT" SCAN fleet LIMIT "$((POINTS + 1))" COUNT; t1=$(now)
GEO_S=$(echo "$t1 - $t0" | bc)
t0=$(now); start_redis; until_answers "$POINTS" "$REDIS_PORT" ZCARD fleet; t1=$(now)
REDIS_S=$(echo "$t1 - $t0" | bc)
t0=$(now); cat "$WORK/geo"/*.aof >/dev/null; t1=$(now)
GEO_CAT=$(echo "$t1 - $t0" | bc)
t0=$(now); cat "$WORK/redis/appendonlydir"/*.aof >/dev/null; t1=$(now)
REDIS_CAT=$(echo "$t1 - $t0" | bc)

mbs() { echo "scale=1; $1 / $2 / 1000000" | bc; }
echo "== restart with $POINTS points (load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-28s %12s %10s %12s %10s %12s\n' "" "file bytes" "restart s" "replay MB/s" "cat s" "cat MB/s"
printf '%-28s %12s %10.3f %12s %10.4f %12s\n' "geohook-server" "$GEO_BYTES" "$GEO_S" "$(mbs "$GEO_BYTES" "$GEO_S")" "$GEO_CAT" "$(mbs "$GEO_BYTES" "$GEO_CAT")"
printf '%-28s %12s %10.3f %12s %10.4f %12s\n' "redis-server (AOF, no RDB)" "$REDIS_BYTES" "$REDIS_S" "$(mbs "$REDIS_BYTES" "$REDIS_S")" "$REDIS_CAT" "$(mbs "$REDIS_BYTES" "$REDIS_CAT")"
printf 'redis restart / geohook restart: %s\n' "$(echo "scale=2; $REDIS_S / $GEO_S" | bc)"
