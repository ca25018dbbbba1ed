#!/usr/bin/env bash
# Cheap-command latency under a flood of heavy searches, with and without
# the bounded pool of heavy commands, against the same server idle, all in
# the same run:
#
#   idle        no flood, measured first
#   pool        64 clients flooding heavy searches, default pool (2 x cores)
#   before      the same flood against BEFORE_BIN, when set (a build of an
#               older commit, e.g. heavy searches on the runtime's workers)
#   no pool     the same flood with --heavy-pool-size 0
#   pool P      the pool mode again with --heavy-priority P, for each P in
#               PRIORITIES (e.g. PRIORITIES="idle batch normal"), when set
#   idle after  no flood again, measured last (after no pool: NO_POOL=0
#               leaves that mode out)
#
# The heavy search is a WITHIN ... COUNT over every point of a collection of
# POINTS points (above the 10 000-object line, and COUNT visits every
# match). The flood is 64 connections from flood.py-style threads below, each
# sending one search at a time and, on a BUSY reply, waiting the 50 ms the
# reply asks for before the next (redis-benchmark cannot flood here: it stops
# a client at its first error reply). Cheap commands are PING, GET of one
# object and SET of one point into the flooded collection, each measured by
# redis-benchmark (4 clients, REQUESTS requests in all) while the flood runs;
# the columns are its p50 and p99 in milliseconds, the p99 as a ratio to the
# idle server's, the heavy searches answered (in all and per second of
# flood) and refused with BUSY during the run (from the metrics). The idle
# p99 the ratios divide by is the mean of the two idle rows', one measured
# before every flood and one after, so that one noisy idle figure does not
# decide the ratios; the rows are printed once both are known.
#
# The flood's own process shares the two cores with the server and with
# redis-benchmark; FLOOD_NICE (default 0) runs it at a lower priority, as if
# the flooding clients were on other hosts, so that the cheap commands'
# figures show the server's isolation rather than the load generator's CPU.
#
# Usage: [FLOOD_NICE=n] [NO_POOL=0] examples/geohook-server/benches/heavy-isolation.sh [points] [requests]
set -euo pipefail
POINTS=${1:-50000}
REQUESTS=${2:-10000}
FLOOD_CLIENTS=64
FLOOD_NICE=${FLOOD_NICE:-0}

source "$(dirname "$0")/common.sh"

python3 "$ROOT/examples/geohook-server/benches/points.py" "$POINTS" "$WORK/geo.load"

# p50 and p99 (ms) of one command from redis-benchmark's CSV line.
latency() { # port, then the command
    local port=$1
    shift
    redis-benchmark -p "$port" -c 4 -n "$REQUESTS" --csv "$@" 2>/dev/null |
        tail -1 | tr -d '"' | awk -F, '{print $5, $7}'
}

run_mode() { # label, binary, flood (yes/no), then server flags
    local label=$1 bin=$2 flood=$3 port mport pid fpid="" started=""
    shift 3
    port=$(free_port); mport=$(free_port)
    mkdir -p "$WORK/s$port"
    RUST_LOG=warn "$bin" --dir "$WORK/s$port" --port "$port" --metrics-addr "127.0.0.1:$mport" "$@" \
        2>"$WORK/s$port.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    redis-cli -p "$port" --pipe <"$WORK/geo.load" >/dev/null
    if [ "$flood" = yes ]; then
        nice -n "$FLOOD_NICE" python3 - "$port" "$FLOOD_CLIENTS" >"$WORK/flood$port.txt" 2>&1 <<'PY' &
import socket, sys, threading, time
port, clients = int(sys.argv[1]), int(sys.argv[2])
req = b"*7\r\n$6\r\nWITHIN\r\n$5\r\nfleet\r\n$5\r\nCOUNT\r\n$6\r\nBOUNDS\r\n$2\r\n31\r\n$4\r\n-117\r\n$2\r\n35\r\n"
req = req.replace(b"*7", b"*8") + b"$4\r\n-113\r\n"
def reply(f):
    line = f.readline()
    if line[:1] == b"*":
        for _ in range(int(line[1:])):
            reply(f)
    elif line[:1] == b"$" and int(line[1:]) >= 0:
        f.read(int(line[1:]) + 2)
    return line
def flood():
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    while True:
        s.sendall(req)
        if reply(f).startswith(b"-BUSY"):
            time.sleep(0.05)
for _ in range(clients):
    threading.Thread(target=flood, daemon=True).start()
time.sleep(3600)
PY
        fpid=$!
        PIDS+=("$fpid")
        started=$(date +%s.%N)
        sleep 2
    fi
    read -r ping50 ping99 <<<"$(latency "$port" PING)"
    read -r get50 get99 <<<"$(latency "$port" GET fleet p7)"
    read -r set50 set99 <<<"$(latency "$port" SET fleet w POINT 33 -115)"
    local page busy runs
    page=$(curl -s "127.0.0.1:$mport/metrics")
    busy=$(awk '/^geohook_heavy_rejected_total/ {s += $2} END {print s + 0}' <<<"$page")
    runs=$(awk '/^geohook_commands_total\{cmd="within"\}/ {s += $2} END {print s + 0}' <<<"$page")
    # Heavy searches answered per second of flood: the modes' floods last
    # as long as their cheap commands take, so counts alone do not compare.
    local rate=0
    if [ -n "$started" ]; then
        rate=$(echo "($runs - $busy) / ($(date +%s.%N) - $started)" | bc)
    fi
    [ -n "$fpid" ] && kill "$fpid" 2>/dev/null || true
    kill "$pid"
    ROWS+=("$label|$ping50|$ping99|$get50|$get99|$set50|$set99|$((runs - busy))|$rate|$busy|$(cut -d' ' -f1 /proc/loadavg)")
    echo "measured: $label" >&2
}
ROWS=()
run_mode idle "$BIN" no
run_mode pool "$BIN" yes
if [ -n "${BEFORE_BIN:-}" ]; then
    run_mode before "$BEFORE_BIN" yes
fi
for priority in ${PRIORITIES:-}; do
    run_mode "pool $priority" "$BIN" yes --heavy-priority "$priority"
done
if [ "${NO_POOL:-1}" != 0 ]; then
    run_mode "no pool" "$BIN" yes --heavy-pool-size 0
fi
run_mode "idle after" "$BIN" no
# The idle p99 of each command: the mean of the first row's and the last's.
idle99() { # field number
    local first last
    first=$(cut -d'|' -f"$1" <<<"${ROWS[0]}")
    last=$(cut -d'|' -f"$1" <<<"${ROWS[${#ROWS[@]} - 1]}")
    echo "scale=4; ($first + $last) / 2" | bc
}
IDLE_PING99=$(idle99 3)
IDLE_GET99=$(idle99 5)
IDLE_SET99=$(idle99 7)
printf '%-12s %8s %8s %6s %8s %8s %6s %8s %8s %6s %8s %8s %8s %6s\n' mode PING_p50 PING_p99 /idle \
    GET_p50 GET_p99 /idle SET_p50 SET_p99 /idle heavy_ok heavy/s busy load
for row in "${ROWS[@]}"; do
    IFS='|' read -r label ping50 ping99 get50 get99 set50 set99 ok rate busy load <<<"$row"
    printf '%-12s %8s %8s %6s %8s %8s %6s %8s %8s %6s %8s %8s %8s %6s\n' "$label" "$ping50" "$ping99" \
        "$(echo "scale=2; $ping99 / $IDLE_PING99" | bc)" "$get50" "$get99" \
        "$(echo "scale=2; $get99 / $IDLE_GET99" | bc)" "$set50" "$set99" \
        "$(echo "scale=2; $set99 / $IDLE_SET99" | bc)" "$ok" "$rate" "$busy" "$load"
done
printf 'idle p99 (mean of the two idle rows): PING %s GET %s SET %s ms\n' "$IDLE_PING99" "$IDLE_GET99" "$IDLE_SET99"
