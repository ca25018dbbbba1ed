# Shared set-up for the benches, sourced by each of them: builds the release
# server (BIN=path skips the build), makes a scratch directory that is removed
# on exit together with every process recorded in PIDS, and, for the
# replication benches, starts a geohook leader and follower beside a
# redis-server master and replica, each on a free port.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
if [ -z "${BIN:-}" ]; then
  cargo build -q --release -p geohook-server --bin geohook-server
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/geohook-server"
fi
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2
  exit 1
}

# Starts the leader (LP), follower (FP), redis master (RM) and replica (RR),
# attaches both replicas and returns once both are in step. Arguments are
# passed to both redis-servers.
start_pairs() {
  LP=$(free_port); FP=$(free_port); RM=$(free_port); RR=$(free_port)
  mkdir -p "$WORK/leader" "$WORK/follower" "$WORK/rmaster" "$WORK/rreplica"
  RUST_LOG=warn "$BIN" --dir "$WORK/leader" --port "$LP" --appendfsync everysec 2>"$WORK/leader.log" &
  PIDS+=($!)
  RUST_LOG=warn "$BIN" --dir "$WORK/follower" --port "$FP" --appendfsync everysec 2>"$WORK/follower.log" &
  PIDS+=($!)
  redis-server --port "$RM" --bind 127.0.0.1 --dir "$WORK/rmaster" --save "" --appendonly yes \
    --appendfsync everysec "$@" --daemonize no >"$WORK/rmaster.log" 2>&1 &
  PIDS+=($!)
  redis-server --port "$RR" --bind 127.0.0.1 --dir "$WORK/rreplica" --save "" --appendonly yes \
    --appendfsync everysec "$@" --replicaof 127.0.0.1 "$RM" --daemonize no >"$WORK/rreplica.log" 2>&1 &
  PIDS+=($!)
  wait_port "$LP"; wait_port "$FP"; wait_port "$RM"; wait_port "$RR"
  redis-cli -p "$FP" FOLLOW 127.0.0.1 "$LP" >/dev/null
  # Start measuring only once both replicas are attached and in step.
  for _ in $(seq 1 200); do
    redis-cli -p "$RR" INFO replication | grep -q "master_link_status:up" &&
      redis-cli -p "$FP" SERVER | grep -A1 -x caught_up | grep -qx true && break
    sleep 0.05
  done
}
