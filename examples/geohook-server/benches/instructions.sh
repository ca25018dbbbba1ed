#!/usr/bin/env bash
# Instructions the server executes per request, counted by callgrind
# (valgrind's instruction counter), for one server binary or for two side by
# side. Unlike CPU seconds, the count does not move with the machine's other
# load, so a change of a few percent in what a request costs shows up in one
# run; it is a count of instructions, not of time (cache misses and branch
# mispredictions cost time it does not show), so a figure from it says how
# much work a request does, and vs-redis.sh's CPU seconds say what that work
# costs on this machine.
#
# For each binary: start it under callgrind with counting off, load the
# benches' seeded points (points.py, with redis-cli --pipe), switch counting
# on, run redis-benchmark with the command (50 clients, pipeline 16), switch
# it off and read the process's total. The count covers every thread of the
# server while the requests run: parsing, the command, replies, metrics and
# the runtime. The kernel's share (system calls) is not counted.
#
# Needs valgrind (Debian: apt-get install valgrind). TOP=n also prints the n
# functions with the most instructions, callees included (the runtime's own
# frames left out), for each binary. CACHE_SIM=1 also simulates this
# machine's caches (callgrind's --cache-sim, much slower) and prints the
# first-level and last-level data cache misses per request.
#
# Usage: BIN=<server> [BASE=<other server>] examples/geohook-server/benches/instructions.sh \
#          [points] [requests] [command ...]
# Default: 200000 points, 20000 requests of NEARBY fleet LIMIT 10 IDS POINT 33 -115 1000
set -euo pipefail
POINTS=${1:-200000}
REQUESTS=${2:-20000}
shift $(($# < 2 ? $# : 2))
if [ $# -eq 0 ]; then
  set -- NEARBY fleet LIMIT 10 IDS POINT 33 -115 1000
fi

source "$(dirname "$0")/common.sh"

for tool in valgrind callgrind_control callgrind_annotate redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "$tool not found (Debian: valgrind, redis-tools)" >&2; exit 1; }
done

python3 "$ROOT/examples/geohook-server/benches/points.py" "$POINTS" "$WORK/geo.cmds"

# Prints the instructions per request of one binary (and its TOP functions).
count() { # label, binary
  local label=$1 bin=$2 port out pid total
  shift 2
  port=$(free_port)
  out="$WORK/callgrind.$label"
  mkdir -p "$WORK/dir.$label"
  local sim=()
  if [ -n "${CACHE_SIM:-}" ]; then sim=(--cache-sim=yes); fi
  valgrind --tool=callgrind "${sim[@]}" --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" --dir "$WORK/dir.$label" --port "$port" --appendfsync everysec 2>"$WORK/$label.log" &
  pid=$!
  PIDS+=("$pid")
  # Under valgrind the server starts tens of times slower.
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  redis-cli -p "$port" --pipe <"$WORK/geo.cmds" >"$WORK/$label.pipe" ||
    { echo "$label: loading the points failed:" >&2; tail -3 "$WORK/$label.pipe" >&2; return 1; }
  callgrind_control -i on "$pid" >/dev/null 2>&1
  redis-benchmark -p "$port" -n "$REQUESTS" -c 50 -P 16 -q "$@" >/dev/null 2>&1
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  # The dump asked for is the first numbered file; the one the exit writes
  # holds nothing counted since.
  total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}')
  if [ -z "$total" ]; then
    echo "$label: callgrind counted nothing; its log:" >&2
    tail -5 "$WORK/$label.log" >&2
    return 1
  fi
  printf '%-10s %14s instructions  %8d per request\n' "$label" "$total" $((total / REQUESTS))
  if [ -n "${CACHE_SIM:-}" ]; then
    callgrind_annotate --show=D1mr,D1mw,DLmr,DLmw "$out.1" 2>/dev/null |
      awk -v n="$REQUESTS" -v l="$label" '/PROGRAM TOTALS/ && !seen {
        for (i = 1; i <= NF; i++) gsub(",", "", $i)
        printf "%-10s data cache misses per request: first-level read %.2f, write %.2f; last-level read %.3f, write %.3f\n",
          l, $1 / n, $3 / n, $5 / n, $7 / n
        seen = 1 }'
  fi
  if [ -n "${TOP:-}" ]; then
    callgrind_annotate --inclusive=yes "$out.1" 2>/dev/null |
      grep -E '^ *[0-9,]+ \(' | grep -vE 'tokio::|tokio_util::|PROGRAM TOTALS' |
      sed -n "1,${TOP}p" | sed -E 's/ \[[^]]*\]$//' | cut -c1-150
  fi
}

echo "== instructions per request: $REQUESTS x '$*', $POINTS points loaded (callgrind)"
count bin "$BIN" "$@"
if [ -n "${BASE:-}" ]; then
  count base "$BASE" "$@"
fi
