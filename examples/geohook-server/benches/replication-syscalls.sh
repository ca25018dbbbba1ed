#!/usr/bin/env bash
# System calls of a replicating pair at a steady write rate, side by side
# with redis-server (master -> replica) driven the same way in the same run:
# one client pipelines SETs to the leader at the target rate (once per
# 0.5 ms at most, as replication-lag.sh's writer), another sends GET after
# GET to the follower, and `strace -c -f` counts every thread's calls of
# each server for the middle of the run. It prints, per server, the calls
# that matter here: futex (a thread woken or put to sleep), epoll_wait, the
# socket reads (recvfrom for geohook-server, read for redis-server) and the
# writes (sendto to sockets and write to files for geohook-server; write for
# both for redis-server), and futex calls per socket read.
#
# strace slows the traced process, so the counts, not the times, are the
# figures. Needs strace (Debian: apt-get install strace).
#
# Usage: examples/geohook-server/benches/replication-syscalls.sh [rate] [seconds]
#   rate     SET/s to the leader (default 10000)
#   seconds  traced per server pair (default 5)
set -euo pipefail

RATE="${1:-10000}"
SECS="${2:-5}"
command -v strace >/dev/null || { echo "strace is not installed (apt-get install strace)" >&2; exit 1; }
BENCHES="$(cd "$(dirname "$0")" && pwd)"
source "$BENCHES/common.sh"
start_pairs
redis-cli -p "$LP" SET k a STRING v >/dev/null
redis-cli -p "$RM" SET k:a v >/dev/null

echo "# $(date -u +%FT%TZ) $(nproc) cores, $RATE SET/s, ${SECS}s traced, load $(cut -d' ' -f1-3 /proc/loadavg)"

# run <name> <leader port> <follower port> <leader pid> <follower pid> <redis?>
run() {
  local name=$1 lport=$2 fport=$3 lpid=$4 fpid=$5 redis=$6
  python3 - "$lport" "$fport" "$RATE" "$((SECS + 2))" "$redis" "$BENCHES" >"$WORK/$name.clients" <<'PY' &
import socket, sys, threading, time
lport, fport, rate, secs, redis = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
sys.path.insert(0, sys.argv[6])
from points import resp

def enc(*args):
    return resp(*args).encode()

def conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def writer():
    s = conn(lport)
    cmds = [enc("SET", "truck%d" % i, "33.%d,-115.%d" % (i, i)) if redis
            else enc("SET", "fleet", "truck%d" % i, "POINT", "33.%d" % i, "-115.%d" % i)
            for i in range(1000)]
    start, sent, buf = time.perf_counter(), 0, b""
    while time.perf_counter() - start < secs:
        n = min(int((time.perf_counter() - start) * rate) - sent, 5000)
        if n <= 0:
            time.sleep(0.0005)
            continue
        s.sendall(b"".join(cmds[(sent + k) % 1000] for k in range(n)))
        while buf.count(b"\r\n") < n:
            buf += s.recv(1 << 16)
        buf = buf.split(b"\r\n", n)[-1]
        sent += n

def reader():
    s = conn(fport)
    cmd = enc("GET", "k:a") if redis else enc("GET", "k", "a")
    end = time.perf_counter() + secs
    while time.perf_counter() < end:
        s.sendall(cmd)
        s.recv(1 << 16)

t = threading.Thread(target=reader)
t.start()
writer()
t.join()
PY
  local clients=$!
  sleep 1
  timeout "$SECS" strace -c -f -p "$lpid" -o "$WORK/$name.leader" 2>/dev/null &
  local tl=$!
  timeout "$SECS" strace -c -f -p "$fpid" -o "$WORK/$name.follower" 2>/dev/null &
  local tf=$!
  wait "$tl" "$tf" || true
  wait "$clients"
  python3 - "$name" "$WORK/$name.leader" "$WORK/$name.follower" <<'PY'
import sys

def counts(path):
    c = {}
    for line in open(path):
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(f) >= 5 and f[0][0].isdigit() and f[3].isdigit():
            c[f[-1]] = int(f[3])
    return c

for role, path in (("leader", sys.argv[2]), ("follower", sys.argv[3])):
    c = counts(path)
    line = "%-14s %-8s" % (sys.argv[1], role)
    line += "".join(" %s %d" % (k, c.get(k, 0)) for k in ("futex", "epoll_wait", "recvfrom", "read", "sendto", "write"))
    # The leader reads one socket chunk per write batch it takes in.
    reads = c.get("recvfrom", 0) + c.get("read", 0)
    if reads:
        line += "  | futex per socket read %.2f" % (c.get("futex", 0) / reads)
    print(line)
PY
}

pids=("${PIDS[@]}")
run geohook-server "$LP" "$FP" "${pids[0]}" "${pids[1]}" 0
run redis-server "$RM" "$RR" "${pids[2]}" "${pids[3]}" 1
