#!/usr/bin/env bash
# Cost per delivered event through the real geohook-server with 1,000 and
# with 70,000 hooks, in the same run. Fences are cells of a fixed grid over a
# 2 x 2 degree box (70,000 cells 0.002 degrees wide, none overlapping); the
# 1,000-hook server gets 1,000 of them. SETs come in pairs: a new object
# appears at the centre of the next fence of that server (round robin), then
# steps just outside it, so each SET produces one event (an enter, then an
# exit; DETECT enter,exit), published to a real redis-server. With 70,000
# hooks the events are spread over 50,000 hooks, with 1,000 over 1,000. Timed: from the first SET until the
# server reports every event delivered (geohook_hook_deliveries_total).
#
# Usage: examples/geohook-server/benches/hooks-event-cost.sh [sets] [runs]
set -euo pipefail
N=${1:-100000}
RUNS=${2:-3}
PORT=${PORT:-29881}
MPORT=${MPORT:-29882}
RPORT=${RPORT:-29883}

source "$(dirname "$0")/common.sh"

redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$RPORT"

python3 - "$WORK" "$N" "$RPORT" <<'PY'
import random, sys
work, n, rport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def resp(args):
    return f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
side, step, size = 265, 2 / 265, 0.002
cells = [(32 + (i // side) * step, -116 + (i % side) * step) for i in range(side * side)][:70000]
r = random.Random(5)
r.shuffle(cells)
for hooks in (1000, 70000):
    mine = cells[:hooks]
    with open(f"{work}/hooks{hooks}.cmds", "w") as f:
        for i, (lat, lon) in enumerate(mine):
            f.write(resp(["SETHOOK", f"h{i}", f"redis://127.0.0.1:{rport}/geo", "WITHIN", "fleet", "FENCE",
                          "DETECT", "enter,exit", "BOUNDS", f"{lat:.6f}", f"{lon:.6f}",
                          f"{lat + size:.6f}", f"{lon + size:.6f}"]))
    rr = random.Random(9)
    with open(f"{work}/sets{hooks}.cmds", "w") as f:
        for k in range(n // 2):
            # A new object appears inside a fence, then steps just outside it:
            # one enter, then one exit.
            lat, lon = mine[k % hooks]
            f.write(resp(["SET", "fleet", f"o{k}", "POINT",
                          f"{lat + size / 2:.6f}", f"{lon + size / 2:.6f}"]))
            f.write(resp(["SET", "fleet", f"o{k}", "POINT",
                          f"{lat + size / 2:.6f}", f"{lon + size * 1.5:.6f}"]))
PY

metric() { curl -s "127.0.0.1:$MPORT/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

one_run() { # hooks
    local h=$1
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data"
    "$BIN" --dir "$WORK/data" --port "$PORT" --metrics-addr "127.0.0.1:$MPORT" --appendfsync everysec \
        2>"$WORK/server.log" &
    SRV_PID=$!
    wait_port "$PORT"
    redis-cli -p "$PORT" --pipe <"$WORK/hooks$1.cmds" >/dev/null
    local t0 t1 events delivered
    t0=$(date +%s.%N)
    redis-cli -p "$PORT" --pipe <"$WORK/sets$1.cmds" >/dev/null
    events=$(metric geohook_hook_events_total)
    # Done when every event was delivered or dropped (a dropped one means
    # delivery fell more than the 30 s time-to-live behind).
    while :; do
        delivered=$(metric 'geohook_hook_deliveries_total{scheme="redis"}')
        dropped=$(metric 'geohook_hook_dropped_total{reason="expired"}')
        [ $(( ${delivered:-0} + ${dropped:-0} )) -ge "$events" ] && break
        sleep 0.01
    done
    t1=$(date +%s.%N)
    if [ "${dropped:-0}" -gt 0 ]; then echo "  $h hooks: $dropped events expired before delivery" >&2; fi
    events=$delivered
    kill "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=
    python3 -c "print(f'{($t1 - $t0) * 1e6 / $events:.2f} $events')"
}

declare -A BEST EVENTS
for run in $(seq "$RUNS"); do
    for h in 1000 70000; do
        read -r us events < <(one_run "$h")
        echo "run $run, $h hooks: $us us per delivered event ($events events)" >&2
        if [ -z "${BEST[$h]:-}" ] || python3 -c "import sys; sys.exit(0 if $us < ${BEST[$h]} else 1)"; then
            BEST[$h]=$us
            EVENTS[$h]=$events
        fi
    done
done
echo "== cost per delivered event, best of $RUNS ($N SETs, one event each, PUBLISH to redis-server)"
for h in 1000 70000; do echo "$h hooks: ${BEST[$h]} us per event (${EVENTS[$h]} events)"; done
python3 -c "print(f'ratio (cost at 1,000 / cost at 70,000): {${BEST[1000]} / ${BEST[70000]}:.2f}')"
