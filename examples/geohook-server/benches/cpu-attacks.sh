#!/usr/bin/env bash
# PING latency from one client while another runs a CPU attack from issue 15,
# each against the same server, all in the same run:
#
#   idle      no attack
#   glob      SCAN ... MATCH with a 100 KB pattern of stars against a
#             200 KB id, in a loop
#   drip      a 1 MB SET whose last argument arrives 16 bytes at a time,
#             one write per millisecond, from a new connection each time
#   polygon   INTERSECTS of a stored polygon of 10,000 vertices with a query
#             polygon of 10,000 vertices, the two interleaved combs of
#             diagonal teeth (`combs::teeth_geojson`), in a loop
#   touching  WITHIN of a stored comb of 10,000 vertices in a query comb of
#             10,000 whose boundary it touches all along (leaning teeth, the
#             stored teeth half as tall: `combs::leaning_comb_geojson`), in a
#             loop; the case `geo`'s DE-9IM took seconds for
#   fields    SCAN ... LIMIT 10000 in JSON output of 10,000 points with one
#             distinct field each (every hit lists the page's field names),
#             in a loop
#
# The attacker is one connection (python, below) that sends one request at a
# time and reads its whole reply. PING is measured by redis-benchmark from
# one other connection while the attack runs; the columns are its p50 and
# p99 in milliseconds, and the p99 as a ratio to the idle row's. The goal is
# a ratio within 10.
#
# Usage: examples/geohook-server/benches/cpu-attacks.sh [pings]
set -euo pipefail
PINGS=${1:-5000}

source "$(dirname "$0")/common.sh"

PORT=$(free_port)
mkdir -p "$WORK/s"
RUST_LOG=warn "$BIN" --dir "$WORK/s" --port "$PORT" --appendfsync everysec 2>"$WORK/s.log" &
PIDS+=($!)
wait_port "$PORT"

# The data each attack needs: a 200 KB id, 10,000 points with a field each,
# and the stored comb of diagonal teeth.
python3 - "$PORT" <<'PY'
import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
def reply():
    line = f.readline()
    if line[:1] in b"*":
        for _ in range(int(line[1:])):
            reply()
    elif line[:1] == b"$" and int(line[1:]) >= 0:
        f.read(int(line[1:]) + 2)
    if line[:1] == b"-":
        # A refusal is the server's answer to the attack's set-up; the
        # attack then measures that.
        print("set-up refused: %r" % line[:80], file=sys.stderr)
s.sendall(cmd("SET", "glob", b"a" * 200_000, "POINT", 33, -112)); reply()
batch = b"".join(cmd("SET", "jf", "p%d" % i, "FIELD", "f%d" % i, 1, "POINT", 33, -112) for i in range(10_000))
s.sendall(batch)
for _ in range(10_000):
    reply()
def teeth(t, up, lean=1.0):
    w = 0.25 / t
    ring = []
    if up:
        ring += [(0.0, 0.0), (1.0, 0.0), (1.0, 0.1)]
        for i in reversed(range(t)):
            x = (i + 0.1) / t
            ring += [(x + w, 0.1), (x + w, 1.0), (x, 1.0), (x, 0.1)]
        ring += [(0.0, 0.1), (0.0, 0.0)]
    else:
        ring += [(0.0, 1.2), (0.0, 1.1)]
        for i in range(t):
            x = (i + 0.6) / t
            ring += [(x, 1.1), (x, 0.2), (x + w, 0.2), (x + w, 1.1)]
        ring += [(1.0, 1.1), (1.0, 1.2), (0.0, 1.2)]
    pts = ",".join("[%r,%r]" % (-112.0 + (x + lean * y) / (1.0 + 1.2 * lean) * 0.1, 33.0 + y * 0.1) for x, y in ring)
    return '{"type":"Polygon","coordinates":[[%s]]}' % pts
s.sendall(cmd("SET", "zones", "comb", "OBJECT", teeth(2500, True))); reply()
def leaning(t, h):
    ring = [(0, 0), (4 * t, 0), (4 * t, 1)]
    for i in reversed(range(t)):
        ring += [(4 * i + 2, 1), (4 * i + 2, h), (4 * i + 1, h), (4 * i + 1, 1)]
    ring += [(0, 1), (0, 0)]
    pts = ",".join("[%r,%r]" % (-112.0 + (x + y) / 1024.0, 33.0 + y / 1024.0) for x, y in ring)
    return '{"type":"Polygon","coordinates":[[%s]]}' % pts
s.sendall(cmd("SET", "tzones", "cut", "OBJECT", leaning(2500, 5000))); reply()
PY
python3 - <<'PY' >"$WORK/query.json"
def teeth(t, up, lean=1.0):
    w = 0.25 / t
    ring = [(0.0, 1.2), (0.0, 1.1)]
    for i in range(t):
        x = (i + 0.6) / t
        ring += [(x, 1.1), (x, 0.2), (x + w, 0.2), (x + w, 1.1)]
    ring += [(1.0, 1.1), (1.0, 1.2), (0.0, 1.2)]
    pts = ",".join("[%r,%r]" % (-112.0 + (x + lean * y) / (1.0 + 1.2 * lean) * 0.1, 33.0 + y * 0.1) for x, y in ring)
    return '{"type":"Polygon","coordinates":[[%s]]}' % pts
print(teeth(2500, False), end="")
PY

# Runs one attack in a loop until killed; prints how many requests it made
# when it is stopped.
attack() { # name
    # `exec`, so that the background job is the attacker itself and
    # stopping it stops the attack.
    exec python3 - "$PORT" "$1" "$WORK/query.json" <<'PY'
import signal, socket, sys, time
port, name, query = int(sys.argv[1]), sys.argv[2], open(sys.argv[3]).read()
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
def reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("closed")
    if line[:1] == b"*":
        for _ in range(int(line[1:])):
            reply(f)
    elif line[:1] == b"$" and int(line[1:]) >= 0:
        f.read(int(line[1:]) + 2)
    return line
done = 0
def stop(*_):
    print(name, done, "requests", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
def conn():
    s = socket.create_connection(("127.0.0.1", port))
    return s, s.makefile("rb")
s, f = conn()
if name == "glob":
    req = cmd("SCAN", "glob", "MATCH", b"*a" * 50_000 + b"*b", "IDS")
elif name == "polygon":
    req = cmd("INTERSECTS", "zones", "IDS", "OBJECT", query)
elif name == "touching":
    t, h = 2500, 10000
    ring = [(0, 0), (4 * t, 0), (4 * t, 1)]
    for i in reversed(range(t)):
        ring += [(4 * i + 2, 1), (4 * i + 2, h), (4 * i + 1, h), (4 * i + 1, 1)]
    ring += [(0, 1), (0, 0)]
    pts = ",".join("[%r,%r]" % (-112.0 + (x + y) / 1024.0, 33.0 + y / 1024.0) for x, y in ring)
    full = '{"type":"Polygon","coordinates":[[%s]]}' % pts
    req = cmd("WITHIN", "tzones", "IDS", "OBJECT", full)
elif name == "fields":
    s.sendall(cmd("OUTPUT", "json")); reply(f)
    req = cmd("SCAN", "jf", "LIMIT", 10_000)
while True:
    try:
        if name == "drip":
            whole = cmd("SET", "drip", "x", "STRING", b"v" * 1_000_000)
            for i in range(0, len(whole), 16):
                s.sendall(whole[i:i + 16])
                time.sleep(0.001)
            reply(f)
            s.close()
            s, f = conn()
        else:
            s.sendall(req)
            reply(f)
    except (ConnectionError, BrokenPipeError, ValueError):
        # A server that closes an attacker's connection has answered it.
        s, f = conn()
    done += 1
PY
}

# p50 and p99 (ms) of PING from one client, from redis-benchmark's CSV line.
latency() {
    redis-benchmark -p "$PORT" -c 1 -n "$PINGS" --csv PING 2>/dev/null |
        tail -1 | tr -d '"' | awk -F, '{print $5, $7}'
}

row() { # label, attack or "" for none
    local label=$1 apid=""
    if [ -n "$2" ]; then
        attack "$2" >"$WORK/attack-$2.txt" 2>&1 &
        apid=$!
        PIDS+=("$apid")
        # Let the attack reach its steady state.
        sleep 2
    fi
    read -r p50 p99 <<<"$(latency)"
    local made=""
    if [ -n "$apid" ]; then
        kill "$apid" 2>/dev/null || true
        wait "$apid" 2>/dev/null || true
        made=$(awk '{print $2}' "$WORK/attack-$2.txt" | tail -1)
    fi
    if [ "$label" = idle ]; then
        IDLE_P99=$p99
    fi
    printf '%-8s %10s %10s %9s %10s\n' "$label" "$p50" "$p99" \
        "$(echo "scale=1; $p99 / $IDLE_P99" | bc)" "${made:--}"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %10s %10s %9s %10s\n' attack PING_p50 PING_p99 p99/idle requests
row idle ""
row glob glob
row drip drip
row polygon polygon
row touching touching
row fields fields
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
