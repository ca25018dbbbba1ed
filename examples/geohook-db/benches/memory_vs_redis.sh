#!/usr/bin/env bash
# Memory per point: geohook-db against redis-server, same points, same run.
#
#   examples/geohook-db/benches/memory_vs_redis.sh [N]     (default N = 1000000)
#   MEMORY_BENCH=path/to/memory-binary examples/geohook-db/benches/memory_vs_redis.sh [N]
#
# geohook-db: jemalloc `stats.allocated` growth while N points are SET (the
# `memory` bench). Redis: `used_memory` growth (also jemalloc's allocated bytes)
# after the same N points arrive as GEOADD through `redis-cli --pipe`. Redis runs
# on a free loopback port with persistence off and is stopped at the end.
set -euo pipefail
N=${1:-1000000}
cd "$(dirname "$0")/../../.."

# MEMORY_BENCH=path runs an already built `memory` bench binary instead
# (for example one built from another commit, for a before/after pair).
if [ -n "${MEMORY_BENCH:-}" ]; then
    bench() { "$MEMORY_BENCH" "$@"; }
else
    cargo bench -q -p geohook-db --bench memory --no-run 2>/dev/null
    bench() { cargo bench -q -p geohook-db --bench memory -- "$@"; }
fi
table=$(bench --bench 2>/dev/null)
ours=$(awk -v n="$N" '$1 == n && $2 == "set" { print $4 }' <<<"$table")
if [ -z "$ours" ]; then
    # The bench prints 10^5, 5·10^5 and 10^6; other sizes fall back to 10^6.
    ours=$(awk '$1 == 1000000 && $2 == "set" { print $4 }' <<<"$table")
fi
bulk=$(awk -v n="$N" '$1 == n && $2 == "bulk" { print $4 }' <<<"$table")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
deadline=$((SECONDS + 10))
until redis-cli -p "$port" ping >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "redis-server did not start" >&2; exit 1; fi
    sleep 0.05
done
used() { redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }
before=$(used)
bench --emit-geoadd "$N" 2>/dev/null | redis-cli -p "$port" --pipe >/dev/null
count=$(redis-cli -p "$port" zcard fleet)
after=$(used)
[ "$count" -eq "$N" ] || { echo "redis holds $count points, expected $N" >&2; exit 1; }
redis_pp=$(awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }')
printf 'points: %d (load average %s)\ngeohook-db bytes/point: %s\nredis-server GEOADD bytes/point: %s\nratio geohook-db/redis: %s\n' \
    "$N" "$(cut -d' ' -f1-3 /proc/loadavg)" "$ours" "$redis_pp" "$(awk -v a="$ours" -v b="$redis_pp" 'BEGIN { printf "%.2f", a / b }')"
if [ -n "$bulk" ]; then
    printf 'geohook-db bytes/point, bulk load: %s (ratio %s)\n' "$bulk" "$(awk -v a="$bulk" -v b="$redis_pp" 'BEGIN { printf "%.2f", a / b }')"
fi
