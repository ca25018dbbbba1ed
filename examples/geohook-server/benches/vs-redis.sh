#!/usr/bin/env bash
# Runs geohook-server and redis-server side by side on this machine, in the
# same run, with the same data, clients and pipelining, and prints:
#   1. redis-benchmark throughput: SET … POINT vs GEOADD, NEARBY vs GEOSEARCH
#      (nearest first), WITHIN a circle vs GEOSEARCH … COUNT 10 ANY (any ten
#      in the circle, unsorted, as WITHIN gives them), and each server's CPU
#      seconds for those requests;
#   2. resident memory per million points for both;
#   3. append-only file size before and after AOFSHRINK, against Redis's
#      BGREWRITEAOF of the same data.
# Both servers keep an append-only file with appendfsync everysec.
#
# GEO_HISTORY=1 starts geohook-server on a file that holds only a replication
# header at offset 1, as a restarted server with a history does: its leader
# then keeps its replication backlog from the start (up to
# --repl-backlog-size, 16 MiB), where a server started on an empty directory
# keeps none until a follower attaches (as redis-server, which has no replica
# here either).
#
# Usage: examples/geohook-server/benches/vs-redis.sh [points] [requests] [clients] [pipeline]
set -euo pipefail
POINTS=${1:-1000000}
REQUESTS=${2:-200000}
CLIENTS=${3:-50}
PIPELINE=${4:-16}
GEO_PORT=${GEO_PORT:-29851}
REDIS_PORT=${REDIS_PORT:-29852}

source "$(dirname "$0")/common.sh"

mkdir -p "$WORK/geo" "$WORK/redis"
if [ -n "${GEO_HISTORY:-}" ]; then
    # REPLSTATE <40-hex replid> <offset 1> <base length 0>, numbers padded to 20 digits.
    printf '*4\r\n$9\r\nREPLSTATE\r\n$40\r\n%s\r\n$20\r\n%020d\r\n$20\r\n%020d\r\n' \
        "$(printf 'ab%.0s' $(seq 20))" 1 0 >"$WORK/geo/appendonly.aof"
fi
"$BIN" --dir "$WORK/geo" --port "$GEO_PORT" --appendfsync everysec 2>"$WORK/geo.log" &
GEO_PID=$!
PIDS+=("$GEO_PID")
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
    --appendonly yes --appendfsync everysec --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$GEO_PORT"; wait_port "$REDIS_PORT"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
GEO_RSS0=$(rss_kb "$GEO_PID")
REDIS_RSS0=$(rss_kb "$REDIS_PID")

# The same random points (seeded) around 33,-115 in a 2x2 degree box for both.
python3 "$ROOT/examples/geohook-server/benches/points.py" "$POINTS" "$WORK/geo.cmds" "$WORK/redis.cmds"
redis-cli -p "$GEO_PORT" --pipe <"$WORK/geo.cmds" >/dev/null
redis-cli -p "$REDIS_PORT" --pipe <"$WORK/redis.cmds" >/dev/null
GEO_RSS1=$(rss_kb "$GEO_PID")
REDIS_RSS1=$(rss_kb "$REDIS_PID")

bench() { # port, then the command
    local port=$1
    shift
    redis-benchmark -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$PIPELINE" -r 1000000 -q "$@" 2>/dev/null |
        tr '\r' '\n' | grep -E 'requests per second' | tail -1 | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/'
}
# CPU time (user + system, in clock ticks) a server process has used, so that
# each phase's cost can be read apart from the machine's other load, which
# moves requests/s far more than it moves the work each request takes.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# Runs bench as given and prints its requests/s and the server's CPU seconds.
timed_bench() { # pid, port, then the command
    local pid=$1 before rate
    shift
    before=$(cpu_ticks "$pid")
    rate=$(bench "$@")
    echo "$rate $(echo "scale=2; ($(cpu_ticks "$pid") - $before) / $HZ" | bc)"
}
echo "== throughput (requests/s; $REQUESTS requests, $CLIENTS clients, pipeline $PIPELINE, $POINTS points loaded)"
GEO_SET=$(timed_bench "$GEO_PID" "$GEO_PORT" SET fleet __rand_int__ POINT 33.5 -115.5)
REDIS_SET=$(timed_bench "$REDIS_PID" "$REDIS_PORT" GEOADD fleet -115.5 33.5 __rand_int__)
GEO_NEAR=$(timed_bench "$GEO_PID" "$GEO_PORT" NEARBY fleet LIMIT 10 IDS POINT 33 -115 1000)
REDIS_NEAR=$(timed_bench "$REDIS_PID" "$REDIS_PORT" GEOSEARCH fleet FROMLONLAT -115 33 BYRADIUS 1000 m ASC COUNT 10)
GEO_WITHIN=$(timed_bench "$GEO_PID" "$GEO_PORT" WITHIN fleet LIMIT 10 IDS CIRCLE 33 -115 1000)
REDIS_WITHIN=$(timed_bench "$REDIS_PID" "$REDIS_PORT" GEOSEARCH fleet FROMLONLAT -115 33 BYRADIUS 1000 m COUNT 10 ANY)
read -r GEO_SET GEO_SET_CPU <<<"$GEO_SET"
read -r REDIS_SET REDIS_SET_CPU <<<"$REDIS_SET"
read -r GEO_NEAR GEO_NEAR_CPU <<<"$GEO_NEAR"
read -r REDIS_NEAR REDIS_NEAR_CPU <<<"$REDIS_NEAR"
read -r GEO_WITHIN GEO_WITHIN_CPU <<<"$GEO_WITHIN"
read -r REDIS_WITHIN REDIS_WITHIN_CPU <<<"$REDIS_WITHIN"
printf '%-34s %12s %12s %7s\n' "" geohook redis ratio
printf '%-34s %12s %12s %7s\n' "SET POINT vs GEOADD" "$GEO_SET" "$REDIS_SET" "$(echo "scale=2; $GEO_SET / $REDIS_SET" | bc)"
printf '%-34s %12s %12s %7s\n' "NEARBY LIMIT 10 vs GEOSEARCH 10" "$GEO_NEAR" "$REDIS_NEAR" "$(echo "scale=2; $GEO_NEAR / $REDIS_NEAR" | bc)"
printf '%-34s %12s %12s %7s\n' "WITHIN LIMIT 10 vs GEOSEARCH ANY" "$GEO_WITHIN" "$REDIS_WITHIN" "$(echo "scale=2; $GEO_WITHIN / $REDIS_WITHIN" | bc)"

echo "== server CPU seconds for the same requests (user + system; ratio geohook / redis)"
printf '%-34s %12s %12s %7s\n' "SET POINT vs GEOADD" "$GEO_SET_CPU" "$REDIS_SET_CPU" "$(echo "scale=2; $GEO_SET_CPU / $REDIS_SET_CPU" | bc)"
printf '%-34s %12s %12s %7s\n' "NEARBY LIMIT 10 vs GEOSEARCH 10" "$GEO_NEAR_CPU" "$REDIS_NEAR_CPU" "$(echo "scale=2; $GEO_NEAR_CPU / $REDIS_NEAR_CPU" | bc)"
printf '%-34s %12s %12s %7s\n' "WITHIN LIMIT 10 vs GEOSEARCH ANY" "$GEO_WITHIN_CPU" "$REDIS_WITHIN_CPU" "$(echo "scale=2; $GEO_WITHIN_CPU / $REDIS_WITHIN_CPU" | bc)"

echo "== resident memory for $POINTS points (VmRSS growth while loading)"
GEO_PER=$(( (GEO_RSS1 - GEO_RSS0) * 1000000 / POINTS / 1024 ))
REDIS_PER=$(( (REDIS_RSS1 - REDIS_RSS0) * 1000000 / POINTS / 1024 ))
printf '%-34s %9s MiB %9s MiB\n' "per million points" "$GEO_PER" "$REDIS_PER"

echo "== append-only file (bytes)"
aof_size() { redis-cli -p "$GEO_PORT" SERVER | awk 'f {print; exit} $0 == "aof_size" {f = 1}'; }
rewrites() { redis-cli -p "$GEO_PORT" SERVER | awk 'f {print; exit} $0 == "aof_rewrites" {f = 1}'; }
BEFORE=$(aof_size)
N=$(rewrites)
redis-cli -p "$GEO_PORT" AOFSHRINK >/dev/null
for _ in $(seq 600); do [ "$(rewrites)" -gt "$N" ] && break; sleep 0.1; done
AFTER=$(aof_size)
# A second shrink with no writes in between is a fresh snapshot of the same state.
N=$(rewrites)
redis-cli -p "$GEO_PORT" AOFSHRINK >/dev/null
for _ in $(seq 600); do [ "$(rewrites)" -gt "$N" ] && break; sleep 0.1; done
FRESH=$(aof_size)
redis-cli -p "$REDIS_PORT" BGREWRITEAOF >/dev/null
for _ in $(seq 600); do
    redis-cli -p "$REDIS_PORT" INFO persistence | grep -q 'aof_rewrite_in_progress:0' &&
        redis-cli -p "$REDIS_PORT" INFO persistence | grep -q 'aof_rewrite_scheduled:0' && break
    sleep 0.1
done
REDIS_AOF=$(du -sb "$WORK/redis" | awk '{print $1}')
printf '%-34s %12s\n' "geohook before AOFSHRINK" "$BEFORE"
printf '%-34s %12s\n' "geohook after AOFSHRINK" "$AFTER"
printf '%-34s %12s\n' "geohook fresh snapshot" "$FRESH"
printf '%-34s %12s\n' "redis after BGREWRITEAOF (dir)" "$REDIS_AOF"
