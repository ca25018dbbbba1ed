#!/usr/bin/env bash
# Size of a follower's append-only file against its leader's over a workload
# heavy in expirations, with redis-server (master + replica, appendonly) run
# the same way in the same run as the peer.
#
# The workload: N objects, 80% of them with a TTL of 1-3 s, written to the
# leader; then the run waits until every TTL has passed and the leader has
# removed (and logged) them all, and until the follower reached the leader's
# offset. A follower never logs deletions of its own, so its file should hold
# the leader's stream bytes; Tile38 followers would add their own.
#
# Usage: examples/geohook-server/benches/replication-expiry-size.sh [objects]
#   objects   default 200000
set -euo pipefail

N="${1:-200000}"
source "$(dirname "$0")/common.sh"
start_pairs --aof-use-rdb-preamble no --auto-aof-rewrite-percentage 0
sstat() { redis-cli -p "$1" SERVER | awk -v k="$2" 'prev==k {print; exit} {prev=$0}'; }

python3 - "$N" > "$WORK/geo.resp" <<'PY'
import random, sys
n = int(sys.argv[1]); r = random.Random(7); out = sys.stdout
for i in range(n):
    lat, lon = r.uniform(-60, 60), r.uniform(-170, 170)
    if r.random() < 0.8:
        args = ["SET", "fleet", "t%d" % i, "EX", str(r.randint(1, 3)), "POINT", "%.5f" % lat, "%.5f" % lon]
    else:
        args = ["SET", "fleet", "t%d" % i, "POINT", "%.5f" % lat, "%.5f" % lon]
    out.write("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args))
PY
python3 - "$N" > "$WORK/redis.resp" <<'PY'
import random, sys
n = int(sys.argv[1]); r = random.Random(7); out = sys.stdout
for i in range(n):
    lat, lon = r.uniform(-60, 60), r.uniform(-170, 170)
    if r.random() < 0.8:
        args = ["SET", "t%d" % i, "%.5f,%.5f" % (lat, lon), "EX", str(r.randint(1, 3))]
    else:
        args = ["SET", "t%d" % i, "%.5f,%.5f" % (lat, lon)]
    out.write("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args))
PY
redis-cli -p "$LP" --pipe < "$WORK/geo.resp" >/dev/null
redis-cli -p "$RM" --pipe < "$WORK/redis.resp" >/dev/null

# Wait until every TTL passed and the expirations reached both replicas
# (redis expires lazily and by sampling, so its keys are touched to force it).
deadline=$((SECONDS + 120))
while :; do
  lo=$(sstat "$LP" repl_offset); fo=$(sstat "$FP" repl_offset)
  lobj=$(sstat "$LP" num_objects)
  rkeys=$(redis-cli -p "$RM" DBSIZE)
  rlag=$(redis-cli -p "$RM" INFO replication | tr -d '\r' | awk -F: '/^master_repl_offset/ {m=$2} /^slave0/ {split($2,a,","); for (i in a) if (a[i] ~ /^offset=/) {sub("offset=","",a[i]); s=a[i]}} END {print m-s}')
  if [ "$lo" = "$fo" ] && [ "$lobj" -le $((N / 4)) ] && [ "$rkeys" -le $((N / 4)) ] && [ "$rlag" = "0" ]; then
    # Objects left: only the ones without a TTL once every TTL passed.
    sleep 4
    lo=$(sstat "$LP" repl_offset); fo=$(sstat "$FP" repl_offset)
    [ "$lo" = "$fo" ] && break
  fi
  [ $SECONDS -gt $deadline ] && { echo "did not converge" >&2; exit 1; }
  redis-cli -p "$RM" --scan >/dev/null
  sleep 1
done
redis-cli -p "$RR" WAIT 0 0 >/dev/null 2>&1 || true
sleep 2

size() { stat -c %s "$1" 2>/dev/null || echo 0; }
redis_aof() { find "$1" -name '*.aof' -type f -printf '%s\n' | awk '{s+=$1} END {print s}'; }
L=$(size "$WORK/leader/appendonly.aof"); F=$(size "$WORK/follower/appendonly.aof")
RMS=$(redis_aof "$WORK/rmaster"); RRS=$(redis_aof "$WORK/rreplica")
echo "# $(date -u +%FT%TZ) $N objects, 80% with a TTL of 1-3 s"
echo "geohook-server: leader expired $(sstat "$LP" expired_keys), follower expired $(sstat "$FP" expired_keys) on its own, $(sstat "$LP" num_objects) objects left"
python3 - "$L" "$F" "$RMS" "$RRS" <<'PY'
import sys
l, f, rm, rr = (int(x) for x in sys.argv[1:])
print("geohook-server leader file %10d bytes, follower file %10d bytes, follower/leader %.4f" % (l, f, f / l))
print("redis-server   master file %10d bytes, replica file  %10d bytes, replica/master  %.4f" % (rm, rr, rr / rm if rm else 0))
PY
