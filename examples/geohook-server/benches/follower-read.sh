#!/usr/bin/env bash
# Read latency on a follower against its leader, side by side with a redis
# replica and its master in the same run: one client (redis-benchmark -c 1)
# sends GET after GET to each server in turn while no write streams, so the
# figure is what a read costs on an idle node of each role (redis-benchmark's
# percentiles come in steps of about 8 us here; the mean, from the rate of
# one client, is finer). A follower
# checks before each read whether stream bytes wait to be applied; this
# shows that the check costs nothing when none do.
#
# Usage: examples/geohook-server/benches/follower-read.sh [requests] [rounds]
#   requests per server per round (default 30000)
#   rounds, each visiting the four servers in a rotated order (default 4)
set -euo pipefail

N="${1:-30000}"
ROUNDS="${2:-4}"
source "$(dirname "$0")/common.sh"
start_pairs
redis-cli -p "$LP" SET k a STRING v >/dev/null
redis-cli -p "$RM" SET k:a v >/dev/null
# Both followers have the key before measuring.
for _ in $(seq 1 200); do
  [ "$(redis-cli -p "$FP" GET k a)" = v ] && [ "$(redis-cli -p "$RR" GET k:a)" = v ] && break
  sleep 0.05
done

echo "# $(date -u +%FT%TZ) $(nproc) cores, $N GETs per server per round, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %6s %10s %10s %9s %9s\n' server round "GET/s" "mean us" "p50 ms" "p99 ms"
targets=("geohook-follower $FP k a" "redis-replica $RR k:a" "geohook-leader $LP k a" "redis-master $RM k:a")
declare -A MEAN
for round in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2 3; do
    # shellcheck disable=SC2086 # name, port and the GET's arguments
    set -- ${targets[$(((i + round) % 4))]}
    name=$1 port=$2
    shift 2
    # (redis-benchmark warns that geohook-server has no CONFIG GET.)
    line=$(redis-benchmark -p "$port" -c 1 -n "$N" --csv GET "$@" 2>/dev/null | tail -1 | tr -d '"')
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
    # One client, one request at a time: the mean round trip is 1/rate.
    mean=$(python3 -c "print('%.1f' % (1e6 / $rps))")
    printf '%-16s %6d %10.0f %10s %9s %9s\n' "$name" "$round" "$rps" "$mean" "$p50" "$p99"
    MEAN[$name.$round]=$mean
  done
done
# Each ratio is of two servers measured in the same round, back to back.
for round in $(seq 1 "$ROUNDS"); do
  python3 -c "print('round %d: mean GET, geohook follower / redis replica %.2f, geohook leader / redis master %.2f' % ($round, ${MEAN[geohook-follower.$round]} / ${MEAN[redis-replica.$round]}, ${MEAN[geohook-leader.$round]} / ${MEAN[redis-master.$round]}))"
done
