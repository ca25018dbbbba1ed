#!/usr/bin/env bash
# Instructions that the NEARBY benches of this crate's `db` bench execute
# inside `Collection::nearby`, counted by callgrind (building the
# collections is not counted), for one build of the bench or two side by
# side. The count does not move with the machine's load, where the bench's
# times on a busy 2-core machine move by tens of percent between runs of
# the same binary. The workload is fixed: each bench runs 2 samples of 200
# NEARBYs for each of its two sizes (the points are seeded), so the totals
# of two builds compare directly; divide by 800 for a mean per NEARBY.
#
# Needs valgrind (Debian: apt-get install valgrind).
#
# Usage: [BENCH=<db bench binary>] [BASE=<other db bench binary>] \
#          examples/geohook-db/benches/instructions.sh
# Without BENCH it builds the working tree's bench. `cargo bench -p
# geohook-db --bench db --no-run` prints a build's binary, to copy aside.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT/examples/geohook-db"
command -v valgrind >/dev/null || { echo "valgrind not found (Debian: valgrind)" >&2; exit 1; }
if [ -z "${BENCH:-}" ]; then
  BENCH=$(cargo bench -q -p geohook-db --bench db --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "db" and m.get("executable"):
        print(m["executable"])')
fi
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT

count() { # binary, then the bench's filter arguments
  local bin=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    --toggle-collect='geohook_db::collection::Collection::nearby' \
    "$bin" --bench "$@" --sample-count 2 --sample-size 200 >/dev/null 2>&1
  callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'
}

printf '%-42s %14s %14s\n' bench "instructions" "${BASE:+base}"
for bench in "--skip after --skip within nearby_limit_10" nearby_limit_10_after_replay \
  nearby_limit_10_within_1km_server_query nearby_radius_1km; do
  # shellcheck disable=SC2086 # the filter is several arguments
  mine=$(count "$BENCH" $bench)
  base=""
  if [ -n "${BASE:-}" ]; then
    # shellcheck disable=SC2086
    base=$(count "$BASE" $bench)
  fi
  printf '%-42s %14s %14s\n' "${bench##* }" "$mine" "$base"
done
