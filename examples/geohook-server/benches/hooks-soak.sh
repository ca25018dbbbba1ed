#!/usr/bin/env bash
# Soak: geohook-server with 70,000 hooks (DETECT enter,exit, one HTTP endpoint
# that answers slowly), under a steady SET load over a fixed set of moving
# objects, for DURATION seconds. Every SAMPLE seconds it records the
# server's resident memory (VmRSS from /proc) and jemalloc's allocated and
# resident bytes (from the metrics endpoint), plus queue figures, to a CSV,
# then prints RSS and allocated growth after the warm-up, and the size of
# the hook journal (hooks.journal) against the events queued.
#
# WARM=0 skips the warm-up pass (every hook then allocates its queue on its
# first event, which shows as slow growth until all hooks have had one).
#
# Usage: examples/geohook-server/benches/hooks-soak.sh [duration_s] [hooks] [sets_per_s] [endpoint_delay_ms]
# Output: examples/geohook-server/benches/results/hooks-soak.csv
set -euo pipefail
DURATION=${1:-660}
HOOKS=${2:-70000}
RATE=${3:-2000}
DELAY_MS=${4:-500}
SAMPLE=${SAMPLE:-5}
WARMUP=${WARMUP:-120}
PORT=${PORT:-29861}
MPORT=${MPORT:-29862}
HPORT=${HPORT:-29863}
OUT=${OUT:-examples/geohook-server/benches/results/hooks-soak.csv}

# BIN=path skips the build (to soak a binary built earlier).
source "$(dirname "$0")/common.sh"

# The slow endpoint: a threaded HTTP server that takes DELAY_MS per request.
python3 - "$HPORT" "$DELAY_MS" <<'PY' &
import http.server, sys, time, socketserver
delay = int(sys.argv[2]) / 1000
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(delay)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
SINK_PID=$!
PIDS+=("$SINK_PID")

mkdir -p "$WORK/data"
"$BIN" --dir "$WORK/data" --port "$PORT" --metrics-addr "127.0.0.1:$MPORT" --appendfsync everysec \
    2>"$WORK/server.log" &
SRV_PID=$!
PIDS+=("$SRV_PID")
wait_port "$PORT"

# 70,000 fences of 0.002 x 0.002 degrees at random in a 2 x 2 degree box,
# and a warm-up pass that moves an object into every fence once, so that
# every hook's queue has held a message before the measurement starts.
python3 - "$HOOKS" "$HPORT" "$WORK" <<'PY'
import random, sys
n, hport, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def resp(args):
    return f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
r = random.Random(7)
with open(f"{work}/hooks.cmds", "w") as h, open(f"{work}/warm.cmds", "w") as w:
    for i in range(n):
        lat, lon = 32 + r.random() * 2, -116 + r.random() * 2
        h.write(resp(["SETHOOK", f"h{i}", f"http://127.0.0.1:{hport}/h", "WITHIN", "fleet", "FENCE",
                      "DETECT", "enter,exit", "BOUNDS", f"{lat:.6f}", f"{lon:.6f}",
                      f"{lat + 0.002:.6f}", f"{lon + 0.002:.6f}"]))
        w.write(resp(["SET", "fleet", f"o{i % 10000}", "POINT", f"{lat + 0.001:.6f}", f"{lon + 0.001:.6f}"]))
PY
redis-cli -p "$PORT" --pipe <"$WORK/hooks.cmds" >/dev/null
if [ "${WARM:-1}" = 1 ]; then redis-cli -p "$PORT" --pipe <"$WORK/warm.cmds" >/dev/null; fi
echo "hooks loaded: $(redis-cli -p "$PORT" HOOKS '*' | grep -c '^h' || true) (listing lines)" >&2

# Steady load: RATE SETs a second, in batches every 50 ms, over 10,000 objects
# that drive around: each update moves one object up to 0.001 degrees
# (about 100 m) in each direction from where it was.
python3 - "$PORT" "$RATE" "$DURATION" <<'PY' &
import random, socket, sys, time
port, rate, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
r = random.Random(11)
pos = [[32 + r.random() * 2, -116 + r.random() * 2] for _ in range(10000)]
s = socket.create_connection(("127.0.0.1", port))
batch = max(1, rate // 20)
start = time.monotonic()
sent = 0
buf = b""
while time.monotonic() - start < duration:
    cmds = []
    for _ in range(batch):
        i = r.randrange(10000)
        p = pos[i]
        p[0] = min(34, max(32, p[0] + r.uniform(-0.001, 0.001)))
        p[1] = min(-114, max(-116, p[1] + r.uniform(-0.001, 0.001)))
        a = ["SET", "fleet", f"o{i}", "POINT", f"{p[0]:.6f}", f"{p[1]:.6f}"]
        cmds.append(f"*{len(a)}\r\n" + "".join(f"${len(x)}\r\n{x}\r\n" for x in a))
    s.sendall("".join(cmds).encode())
    sent += batch
    # Read the replies (+OK\r\n each) so the server never blocks on a full socket.
    need = 5 * batch
    while need > 0:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("server closed")
        need -= len(chunk)
    target = start + sent / rate
    delay = target - time.monotonic()
    if delay > 0:
        time.sleep(delay)
PY
LOAD_PID=$!
PIDS+=("$LOAD_PID")

echo "t_s,sets,rss_bytes,jemalloc_allocated_bytes,jemalloc_resident_bytes,queued_messages,queued_bytes,events,deliveries_http,dropped_expired,dropped_overflow,fence_groups,journal_bytes,dead_letters_held,enqueued" >"$OUT"
metric() { awk -v n="$1" '$1 == n {print $2}' "$WORK/m"; }
T0=$(date +%s)
while kill -0 "$LOAD_PID" 2>/dev/null; do
    NOW=$(( $(date +%s) - T0 ))
    curl -s "127.0.0.1:$MPORT/metrics" >"$WORK/m" || true
    RSS=$(( $(awk '/^VmRSS:/ {print $2}' "/proc/$SRV_PID/status") * 1024 ))
    echo "$NOW,$(metric 'geohook_commands_total{cmd="set"}'),$RSS,$(metric geohook_jemalloc_allocated_bytes),$(metric geohook_jemalloc_resident_bytes),$(metric geohook_hook_queued_messages),$(metric geohook_hook_queued_bytes),$(metric geohook_hook_events_total),$(metric 'geohook_hook_deliveries_total{scheme="http"}'),$(metric 'geohook_hook_dropped_total{reason="expired"}'),$(metric 'geohook_hook_dropped_total{reason="overflow"}'),$(metric geohook_hook_fence_groups),$(stat -c %s "$WORK/data/hooks.journal" 2>/dev/null || echo 0),$(metric geohook_hook_dead_letters_held),$(metric geohook_hook_enqueued_total)" >>"$OUT"
    sleep "$SAMPLE"
done
wait "$LOAD_PID" || { echo "load client failed" >&2; exit 1; }

python3 - "$OUT" "$WARMUP" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
warm = int(sys.argv[2])
after = [r for r in rows if int(r["t_s"]) >= warm]
def growth(col):
    first, last = int(after[0][col]), int(after[-1][col])
    peak = max(int(r[col]) for r in after)
    return first, last, peak, 100.0 * (last - first) / first
for col in ("rss_bytes", "jemalloc_allocated_bytes"):
    f, l, p, g = growth(col)
    print(f"{col}: at {after[0]['t_s']} s {f/2**20:.1f} MiB, at {after[-1]['t_s']} s {l/2**20:.1f} MiB, peak {p/2**20:.1f} MiB, growth {g:+.2f}%")
last = rows[-1]
print(f"events {last['events']}, http deliveries {last['deliveries_http']}, dropped (ttl) {last['dropped_expired']}, dropped (bound) {last['dropped_overflow']}, samples {len(rows)}")
jb = [int(r["journal_bytes"] or 0) for r in rows]
print(f"hooks.journal: at end {jb[-1]/2**20:.2f} MiB, peak {max(jb)/2**20:.2f} MiB; at end {last['queued_messages']} queued "
      f"({int(last['queued_bytes'] or 0)/2**20:.2f} MiB of bodies) and {last['dead_letters_held']} dead letters held, "
      f"{last['enqueued']} events queued in all")
PY
