#!/usr/bin/env bash
# SET throughput through the real geohook-server with 0, 1,000 and 70,000
# hooks, in the same run, same data and same client. Hooks are WITHIN
# fences of 0.002 x 0.002 degrees at random in a 2 x 2 degree box, DETECT
# enter,exit, delivering to a real redis-server (PUBLISH). The load is
# N SETs of 10,000 objects driving around the box (each update moves one
# object up to 0.001 degrees, about 100 m, in each direction), sent over
# one pipelined connection with `redis-cli --pipe`; each configuration is
# run RUNS times on a fresh server and the best run is kept. With 70,000
# hooks it runs twice: with the durable hook queue (the hook journal, the
# default) and with today's in-memory queue (--hook-journal no), side by
# side in each round, and prints their ratio.
#
# Usage: examples/geohook-server/benches/hooks-throughput.sh [sets] [runs]
set -euo pipefail
N=${1:-300000}
RUNS=${2:-3}
PORT=${PORT:-29871}
MPORT=${MPORT:-29872}
RPORT=${RPORT:-29873}

source "$(dirname "$0")/common.sh"

redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$RPORT"

python3 - "$WORK" "$N" "$RPORT" <<'PY'
import random, sys
work, n, rport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def resp(args):
    return f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
r = random.Random(7)
with open(f"{work}/hooks.cmds", "w") as f:
    for i in range(70000):
        lat, lon = 32 + r.random() * 2, -116 + r.random() * 2
        f.write(resp(["SETHOOK", f"h{i}", f"redis://127.0.0.1:{rport}/geo", "WITHIN", "fleet", "FENCE",
                      "DETECT", "enter,exit", "BOUNDS", f"{lat:.6f}", f"{lon:.6f}",
                      f"{lat + 0.002:.6f}", f"{lon + 0.002:.6f}"]))
r = random.Random(11)
pos = [[32 + r.random() * 2, -116 + r.random() * 2] for _ in range(10000)]
with open(f"{work}/preload.cmds", "w") as f:
    for i, p in enumerate(pos):
        f.write(resp(["SET", "fleet", f"o{i}", "POINT", f"{p[0]:.6f}", f"{p[1]:.6f}"]))
with open(f"{work}/sets.cmds", "w") as f:
    for _ in range(n):
        i = r.randrange(10000)
        p = pos[i]
        p[0] = min(34, max(32, p[0] + r.uniform(-0.001, 0.001)))
        p[1] = min(-114, max(-116, p[1] + r.uniform(-0.001, 0.001)))
        f.write(resp(["SET", "fleet", f"o{i}", "POINT", f"{p[0]:.6f}", f"{p[1]:.6f}"]))
PY
# The first H hooks of the file.
head_hooks() { python3 -c "
import sys
data = open('$WORK/hooks.cmds', newline='').read().split('*13\r\n')[1:]
sys.stdout.write(''.join('*13\r\n' + c for c in data[:$1]))"; }

metric() { curl -s "127.0.0.1:$MPORT/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

one_run() { # hooks journal(yes|no)
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data"
    "$BIN" --dir "$WORK/data" --port "$PORT" --metrics-addr "127.0.0.1:$MPORT" --appendfsync everysec \
        --hook-journal "$2" 2>"$WORK/server.log" &
    SRV_PID=$!
    wait_port "$PORT"
    if [ "$1" -gt 0 ]; then head_hooks "$1" | redis-cli -p "$PORT" --pipe >/dev/null; fi
    redis-cli -p "$PORT" --pipe <"$WORK/preload.cmds" >/dev/null
    local t0 t1
    t0=$(date +%s.%N)
    redis-cli -p "$PORT" --pipe <"$WORK/sets.cmds" >/dev/null
    t1=$(date +%s.%N)
    local events journal
    events=$(metric geohook_hook_events_total)
    journal=$(stat -c %s "$WORK/data/hooks.journal" 2>/dev/null || echo 0)
    echo "  hooks.journal: $journal bytes after the run" >&2
    kill "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=
    python3 -c "print(f'{$N / ($t1 - $t0):.0f} ${events:-0}')"
}

declare -A BEST EVENTS
for run in $(seq "$RUNS"); do
    for c in 0:yes 1000:yes 70000:yes 70000:no; do
        h=${c%:*}
        j=${c#*:}
        key=$h
        if [ "$j" = no ]; then key=70000mem; fi
        read -r rate events < <(one_run "$h" "$j")
        echo "run $run, $h hooks, journal $j: $rate SET/s ($events events)" >&2
        if [ -z "${BEST[$key]:-}" ] || [ "$rate" -gt "${BEST[$key]}" ]; then BEST[$key]=$rate; EVENTS[$key]=$events; fi
    done
done
echo "== SET throughput, best of $RUNS ($N SETs over one pipelined connection, 10,000 objects)"
for h in 0 1000 70000; do
    python3 -c "print(f'{$h:>6} hooks: {${BEST[$h]}:>8} SET/s  ({${BEST[$h]} / ${BEST[0]}:.2f} of 0 hooks; ${EVENTS[$h]} events)')"
done
python3 -c "print(f' 70000 hooks, in-memory queue (--hook-journal no): {${BEST[70000mem]}:>8} SET/s (${EVENTS[70000mem]} events)')"
python3 -c "print(f'durable / in-memory at 70,000 hooks: {${BEST[70000]} / ${BEST[70000mem]}:.2f}')"
