#!/usr/bin/env bash
# Side-by-side figures for wal-repair, measured in one run on this machine:
#  1. `wal-repair check` scan throughput on a 1 GiB log in each format (frames also on one thread),
#     against `cat FILE > /dev/null`
#     with the page cache warm (targets: RESP at least 0.5 of cat's throughput, frames 0.8);
#  2. `wal-repair check DIR` against `redis-check-aof DIR/appendonly.aof.manifest` on the same 1 GiB
#     Redis 7 multi-part AOF directory (a RESP base file and two incremental files, cut from the RESP
#     log below at record boundaries), both exiting "valid";
#  3. `wal-repair fix` against `redis-check-aof --fix` on identical copies of a torn 1 GiB RESP file
#     (target: at least 10x faster), and whether both cut at the same offset.
# Usage: wal-repair/benches/compare.sh [SIZE_MIB]   (default 1024). Needs python3 and redis-check-aof.
# The big files live in a temporary directory that is deleted on exit.
set -euo pipefail

SIZE_MIB=${1:-1024}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
cargo build --release -q -p wal-repair-cli --bin wal-repair
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wal-repair"
command -v redis-check-aof >/dev/null || { echo "redis-check-aof not found (apt-get install redis-tools)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wal-repair-compare.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Logs are built from a 1 MiB block of records of mixed sizes (40 B to 4 KiB payloads, straddling 512 B
# and 4 KiB), repeated; every record is valid and the scanner parses each one.
python3 - "$WORK" "$SIZE_MIB" <<'PY'
import struct, sys, zlib
work, size_mib = sys.argv[1], int(sys.argv[2])
sizes = [40, 200, 530, 1500, 4100, 90, 700]

def crc32c_table():
    poly = 0x82F63B78
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t
T = crc32c_table()
def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

def resp(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n" % len(a) + a + b"\r\n"
    return out

def block(kind):
    out, n = bytearray(), 0
    while True:
        payload = bytes([97 + n % 26]) * sizes[n % len(sizes)]
        if kind == "resp":
            rec = resp([b"SET", b"key:%d" % n, payload])
        else:
            lb = struct.pack("<I", len(payload))
            rec = lb + struct.pack("<I", crc32c(lb + payload)) + payload
        if len(out) + len(rec) > 1 << 20:
            return bytes(out)
        out += rec
        n += 1

for kind, header in (("resp", b""), ("frames", b"WALRPR\x00\x01")):
    b = block(kind)
    with open(f"{work}/block.{kind}", "w") as f:
        f.write(str(len(b)))
    with open(f"{work}/log.{kind}", "wb") as f:
        f.write(header)
        for _ in range(size_mib):
            f.write(b)
PY

now_us() { date +%s%6N; }
# Runs "$@" three times and prints the best wall time in microseconds.
best_us() {
  local best=0 s e d
  for _ in 1 2 3; do
    s=$(now_us); "$@" >/dev/null 2>&1 || true; e=$(now_us); d=$((e - s))
    if [ "$best" -eq 0 ] || [ "$d" -lt "$best" ]; then best=$d; fi
  done
  echo "$best"
}
mbps() { python3 -c "print(f'{$1 / 1e6 / ($2 / 1e6):.0f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

echo "== scan throughput, warm page cache ($SIZE_MIB MiB per file; load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
# The frames log is also checked on one thread (`--threads 1`, the walk before the two-thread scan) so
# that before and after come from the same run.
printf '%-17s %12s %12s %14s\n' format "cat MB/s" "check MB/s" "check/cat"
for kind in resp frames frames-1-thread; do
  f="$WORK/log.${kind%%-*}"
  args=(check --format "${kind%%-*}")
  [ "$kind" = frames-1-thread ] && args+=(--threads 1)
  bytes=$(stat -c %s "$f")
  cat "$f" >/dev/null
  cat_us=$(best_us sh -c "cat '$f' > /dev/null")
  chk_us=$(best_us "$BIN" "${args[@]}" "$f")
  code=0; "$BIN" "${args[@]}" "$f" >/dev/null || code=$?
  [ "$code" -eq 0 ] || { echo "check of the clean $kind log exited $code" >&2; exit 1; }
  printf '%-17s %12s %12s %14s\n' "$kind" "$(mbps "$bytes" "$cat_us")" "$(mbps "$bytes" "$chk_us")" "$(ratio "$cat_us" "$chk_us")"
done

echo
echo "== check a multi-part AOF directory: wal-repair check DIR vs redis-check-aof MANIFEST =="
mp="$WORK/appendonlydir"
mkdir "$mp"
# Record-aligned split: the RESP log is a whole 1 MiB block of records repeated, so cutting at a
# multiple of the block length never splits a record. Base = first half, then two quarters.
python3 - "$WORK/log.resp" "$mp" "$(cat "$WORK/block.resp")" <<'PY'
import os, sys
src, mp, blk = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = os.path.getsize(src)
nblocks = size // blk
cuts = [0, nblocks // 2 * blk, nblocks * 3 // 4 * blk, size]
names = ["appendonly.aof.1.base.aof", "appendonly.aof.1.incr.aof", "appendonly.aof.2.incr.aof"]
with open(src, "rb") as f:
    for name, a, b in zip(names, cuts, cuts[1:]):
        f.seek(a)
        with open(f"{mp}/{name}", "wb") as out:
            left = b - a
            while left:
                chunk = f.read(min(left, 64 << 20))
                out.write(chunk)
                left -= len(chunk)
with open(f"{mp}/appendonly.aof.manifest", "w") as m:
    m.write(f"file {names[0]} seq 1 type b\nfile {names[1]} seq 1 type i\nfile {names[2]} seq 2 type i\n")
PY
dir_bytes=$(cat "$mp"/*.aof | wc -c)
cat "$mp"/*.aof >/dev/null
code=0; "$BIN" check "$mp" >/dev/null || code=$?
[ "$code" -eq 0 ] || { echo "wal-repair check of the directory exited $code" >&2; exit 1; }
redis-check-aof "$mp/appendonly.aof.manifest" | grep -q "All AOF files and manifest are valid" \
  || { echo "redis-check-aof does not accept the directory" >&2; exit 1; }
ours_us=$(best_us "$BIN" check "$mp")
redis_us=$(best_us redis-check-aof "$mp/appendonly.aof.manifest")
echo "directory: $dir_bytes bytes in 3 files"
echo "wal-repair check DIR (best of 3):        $((ours_us / 1000)) ms ($(mbps "$dir_bytes" "$ours_us") MB/s)"
echo "redis-check-aof MANIFEST (best of 3):    $((redis_us / 1000)) ms ($(mbps "$dir_bytes" "$redis_us") MB/s)"
echo "speed-up: $(ratio "$redis_us" "$ours_us")x"
rm -rf "$mp"

echo
echo "== fix a torn RESP log: wal-repair fix vs redis-check-aof --fix =="
torn="$WORK/torn.aof"
mv "$WORK/log.resp" "$torn"
rm -f "$WORK/log.frames"
# Append a record and cut it in the middle, as a crash during the append would.
python3 - "$torn" <<'PY'
import sys
rec = b"*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$1000\r\n" + b"z" * 1000 + b"\r\n"
with open(sys.argv[1], "ab") as f:
    f.write(rec[:600])
PY
size=$(stat -c %s "$torn")
# Three rounds on fresh copies of the same torn file; the best time of each tool is reported.
ours_us=0; redis_us=0
for _ in 1 2 3; do
  cp "$torn" "$WORK/a.aof"; cp "$torn" "$WORK/b.aof"
  # Write the copies back first: otherwise wal-repair's fsync after the truncate would also pay for
  # flushing the copy itself, which redis-check-aof (which never syncs) does not.
  sync "$WORK/a.aof" "$WORK/b.aof"
  cat "$WORK/a.aof" "$WORK/b.aof" >/dev/null
  rm -f "$WORK"/a.aof.*.torn
  s=$(now_us); "$BIN" fix --format resp "$WORK/a.aof" >/dev/null; e=$(now_us); d=$((e - s))
  if [ "$ours_us" -eq 0 ] || [ "$d" -lt "$ours_us" ]; then ours_us=$d; fi
  s=$(now_us); echo y | redis-check-aof --fix "$WORK/b.aof" >/dev/null 2>&1 || true; e=$(now_us); d=$((e - s))
  if [ "$redis_us" -eq 0 ] || [ "$d" -lt "$redis_us" ]; then redis_us=$d; fi
done
a_len=$(stat -c %s "$WORK/a.aof"); b_len=$(stat -c %s "$WORK/b.aof")
echo "torn file: $size bytes"
echo "wal-repair fix (best of 3):        $((ours_us / 1000)) ms, cut to $a_len bytes"
echo "redis-check-aof --fix (best of 3): $((redis_us / 1000)) ms, cut to $b_len bytes"
echo "speed-up: $(ratio "$redis_us" "$ours_us")x; same offset: $([ "$a_len" -eq "$b_len" ] && echo yes || echo no)"
