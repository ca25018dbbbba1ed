#!/usr/bin/env bash
# Resident memory after deletes: loads N objects, deletes 80 % of them, waits
# 30 s with no traffic, then prints VmRSS and the allocator's live bytes, for
# geohook-server under several jemalloc settings and for redis-server doing
# the same, all in the same run. Two workloads:
#
#   points    N points (SET fleet id POINT), redis: GEOADD, then ZREM
#   strings   N strings of 4000 bytes (SET blobs id STRING), redis: SET, DEL
#
#   server defaults     the options main.rs sets (background threads, dirty
#                       decay 1 s, muzzy 0)
#   jemalloc defaults   what jemalloc does unconfigured (no background
#                       threads, dirty decay 10 s, muzzy 0)
#   the others          candidates for the choice of dirty decay
#   before              server defaults on BEFORE_BIN, when set (a build of
#                       an older commit, e.g. before geohook-db gave slots
#                       back)
#
# DECAY=no leaves the dirty-decay candidates out (the points workload keeps
# its memory in the data structures, so they all give the same figure).
#
# "allocated" is jemalloc stats.allocated for geohook (SERVER heap_size) and
# used_memory for redis (INFO memory); "rss/alloc" is how far resident memory
# stays above live data; "rss/redis" compares with redis-server's VmRSS after
# the same 30 s.
#
# Usage: [BEFORE_BIN=path] [DECAY=no] examples/geohook-server/benches/memory-after-delete.sh [points|strings] [N] [wait seconds]
set -euo pipefail
WORKLOAD=${1:-points}
POINTS=${2:-1000000}
WAIT=${3:-30}

source "$(dirname "$0")/common.sh"

python3 - "$POINTS" "$WORK" "$WORKLOAD" <<'PY'
import random, sys
n, work, workload = int(sys.argv[1]), sys.argv[2], sys.argv[3]
blob = "x" * 4000
r = random.Random(38)
def resp(*args):
    out = [f"*{len(args)}\r\n"]
    for a in args:
        a = str(a)
        out.append(f"${len(a.encode())}\r\n{a}\r\n")
    return "".join(out)
with open(f"{work}/geo.load", "w") as g, open(f"{work}/redis.load", "w") as rd, \
     open(f"{work}/geo.del", "w") as gd, open(f"{work}/redis.del", "w") as rdd:
    for i in range(n):
        if workload == "strings":
            g.write(resp("SET", "blobs", f"s{i}", "STRING", blob))
            rd.write(resp("SET", f"s{i}", blob))
            if i % 5:
                gd.write(resp("DEL", "blobs", f"s{i}"))
                rdd.write(resp("DEL", f"s{i}"))
            continue
        lat = 32 + r.random() * 2
        lon = -116 + r.random() * 2
        g.write(resp("SET", "fleet", f"p{i}", "POINT", f"{lat:.6f}", f"{lon:.6f}"))
        rd.write(resp("GEOADD", "fleet", f"{lon:.6f}", f"{lat:.6f}", f"p{i}"))
        if i % 5:
            gd.write(resp("DEL", "fleet", f"p{i}"))
            rdd.write(resp("ZREM", "fleet", f"p{i}"))
PY

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
stat() { redis-cli -p "$1" SERVER | awk -v k="$2" 'f {print; exit} $0 == k {f = 1}'; }

printf '%-48s %10s %10s %10s %9s %9s\n' config full_MiB after_MiB alloc_MiB rss/alloc rss/redis
ROWS=()
run_geo() { # label, the _RJEM_MALLOC_CONF value (empty = unset), [binary]
    local label=$1 conf=$2 bin=${3:-$BIN} port pid
    port=$(free_port)
    mkdir -p "$WORK/g$port"
    if [ -n "$conf" ]; then
        _RJEM_MALLOC_CONF=$conf RUST_LOG=warn "$bin" --dir "$WORK/g$port" --port "$port" 2>"$WORK/g$port.log" &
    else
        RUST_LOG=warn "$bin" --dir "$WORK/g$port" --port "$port" 2>"$WORK/g$port.log" &
    fi
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    redis-cli -p "$port" --pipe <"$WORK/geo.load" >/dev/null
    local full after alloc
    full=$(rss_mib "$pid")
    redis-cli -p "$port" --pipe <"$WORK/geo.del" >/dev/null
    sleep "$WAIT"
    after=$(rss_mib "$pid")
    alloc=$(awk -v b="$(stat "$port" heap_size)" 'BEGIN {printf "%.1f", b / 1048576}')
    ROWS+=("$label|$full|$after|$alloc")
    kill "$pid"
}
run_geo "server defaults" ""
if [ -n "${BEFORE_BIN:-}" ]; then
    run_geo "before (server defaults)" "" "$BEFORE_BIN"
fi
if [ "${DECAY:-yes}" != no ]; then
    run_geo "jemalloc defaults" "background_thread:false,dirty_decay_ms:10000,muzzy_decay_ms:0"
    run_geo "bg threads, dirty 0" "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
    run_geo "bg threads, dirty 5000" "background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0"
    run_geo "bg threads, dirty 10000" "background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:0"
fi

port=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis" --save '' --appendonly no \
    --daemonize no >"$WORK/redis.log" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_port "$port"
redis-cli -p "$port" --pipe <"$WORK/redis.load" >/dev/null
full=$(rss_mib "$pid")
redis-cli -p "$port" --pipe <"$WORK/redis.del" >/dev/null
sleep "$WAIT"
REDIS_AFTER=$(rss_mib "$pid")
alloc=$(redis-cli -p "$port" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" {printf "%.1f", $2 / 1048576}')
ROWS+=("redis-server $(redis-server --version | awk '{print $3}')|$full|$REDIS_AFTER|$alloc")

for row in "${ROWS[@]}"; do
    IFS='|' read -r label full after alloc <<<"$row"
    printf '%-48s %10s %10s %10s %9s %9s\n' "$label" "$full" "$after" "$alloc" \
        "$(echo "scale=2; $after / $alloc" | bc)" "$(echo "scale=2; $after / $REDIS_AFTER" | bc)"
done
