#!/usr/bin/env bash
# Runs the test suites that two Tile38 client libraries ship in their
# registries against a leader and a follower of this server, and prints
# passed / failed / skipped per suite with the names of the failing tests.
#
#   examples/geohook-server/compat/client-suites.sh [pyle38|tile38-ts]...
#
# With no argument both suites run. It builds the server in release mode,
# starts each pair on free loopback ports in temporary directories (a fresh
# pair per suite, so one suite's leftovers cannot fail the other), and
# installs the suites and their runners under target/client-suites/:
#   - pyle38 (Python, pytest + pytest-asyncio) into a venv, its tests from
#     the sdist; TILE38_LEADER_URI / TILE38_FOLLOWER_URI point it at the pair.
#   - @iwpnd/tile38-ts (TypeScript, compiled tests in dist/tests, run by
#     jest as its package.json's "test" script does) with npm. Its tests and
#     its client's default port are written for 9851 and 9852, so the copy
#     under target/ has those two numbers replaced by the pair's ports; no
#     other byte of the suite is changed.
# It is a compatibility benchmark, not part of tests/run.sh: it downloads
# from PyPI and npm and takes minutes. Set KEEP=1 to keep the servers' logs.
# The exit code is 0 when every suite ran, whatever its failures; it is not
# 0 when a suite could not be installed or run.
set -euo pipefail

# The versions the README's figures were measured with. The runners and the
# clients' own dependencies are pinned too, so a rerun measures the same code.
PYLE38_VERSION=0.16.2
PY_PINS=(
    "pyle38==$PYLE38_VERSION" "redis==8.1.0" "pydantic==2.14.4"
    "pytest==9.2.0" "pytest-asyncio==1.5.0"
)
TILE38_TS_VERSION=2.4.9
JEST_VERSION=30.2.0

ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$ROOT"
WORK="$ROOT/target/client-suites"
mkdir -p "$WORK"

SUITES=("$@")
if [ ${#SUITES[@]} -eq 0 ]; then SUITES=(pyle38 tile38-ts); fi
for s in "${SUITES[@]}"; do
    case "$s" in
        pyle38 | tile38-ts) ;;
        *) echo "unknown suite '$s' (pyle38 or tile38-ts)" >&2; exit 64 ;;
    esac
done

# A fresh Debian machine has python3 but may lack venv, pip, node or npm;
# install what is missing from the distribution, as tests/run.sh does.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
NEED=()
command -v python3 >/dev/null || NEED+=(python3)
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then NEED+=(python3-venv); fi
command -v node >/dev/null || NEED+=(nodejs)
command -v npm >/dev/null || NEED+=(npm)
if [ ${#NEED[@]} -gt 0 ]; then apt_install "${NEED[@]}"; fi

echo "== building geohook-server (release)" >&2
cargo build --release -q -p geohook-server
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/geohook-server"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-}" = 1 ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sends one command in RESP and prints the reply's first line; the servers
# answer in RESP to a client that speaks it, as Tile38 does.
resp() {
    python3 - "$@" <<'EOF'
import socket, sys
port, args = int(sys.argv[1]), sys.argv[2:]
with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args))
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
print(data.decode(errors="replace").strip())
EOF
}

# Waits up to 60 s for a condition; a deadline, not a delay.
wait_for() {
    local what="$1"
    shift
    for _ in $(seq 600); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    return 1
}
answers_ping() { [ "$(resp "$1" PING)" = "+PONG" ]; }
# HEALTHZ answers OK once a follower has caught up with its leader; until
# then it answers "catching up to leader", as Tile38's does.
caught_up() { [ "$(resp "$1" HEALTHZ)" = "+OK" ]; }

LEADER_PORT=""
FOLLOWER_PORT=""
start_pair() {
    local name="$1"
    LEADER_PORT="$(free_port)"
    mkdir -p "$TMP/$name/leader" "$TMP/$name/follower"
    "$BIN" --dir "$TMP/$name/leader" --port "$LEADER_PORT" >"$TMP/$name/leader.log" 2>&1 &
    PIDS+=($!)
    wait_for "the leader on $LEADER_PORT" answers_ping "$LEADER_PORT"
    FOLLOWER_PORT="$(free_port)"
    "$BIN" --dir "$TMP/$name/follower" --port "$FOLLOWER_PORT" >"$TMP/$name/follower.log" 2>&1 &
    PIDS+=($!)
    wait_for "the follower on $FOLLOWER_PORT" answers_ping "$FOLLOWER_PORT"
    [ "$(resp "$FOLLOWER_PORT" FOLLOW 127.0.0.1 "$LEADER_PORT")" = "+OK" ]
    wait_for "the follower to catch up" caught_up "$FOLLOWER_PORT"
}
stop_pair() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

# Prints "suite version passed failed skipped" and the failing names from a
# JUnit XML file (pytest) or jest's JSON report.
summarize() {
    python3 - "$@" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
suite, version, kind, path = sys.argv[1:5]
passed, failed, skipped, names = 0, 0, 0, []
if kind == "junit":
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("classname", "").split(".")[-1] + "::" + case.get("name", "")
        if case.find("skipped") is not None:
            skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            names.append(name)
        else:
            passed += 1
else:
    report = json.load(open(path))
    for file in report["testResults"]:
        base = file["name"].rsplit("/", 1)[-1]
        for t in file["assertionResults"]:
            if t["status"] == "passed":
                passed += 1
            elif t["status"] in ("pending", "skipped", "todo", "disabled"):
                skipped += 1
            else:
                failed += 1
                names.append(base + " :: " + t["fullName"])
        # A file that fails to load has no assertion results but is a failure.
        if not file["assertionResults"] and file.get("status") == "failed":
            failed += 1
            names.append(base + " :: (file failed to run)")
print(f"{suite} {version}: passed {passed}, failed {failed}, skipped {skipped}")
for n in names:
    print(f"  FAIL {n}")
EOF
}

run_pyle38() {
    local venv="$WORK/py" src="$WORK/pyle38-$PYLE38_VERSION"
    if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/pip" freeze 2>/dev/null | grep -x "pyle38==$PYLE38_VERSION" >/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "${PY_PINS[@]}"
    fi
    if [ ! -d "$src/tests" ]; then
        # The tests ship only in the sdist; the wheel installed above is the
        # client they import.
        (cd "$WORK" && "$venv/bin/pip" download -q --no-deps --no-binary :all: "pyle38==$PYLE38_VERSION" \
            && tar xzf "pyle38-$PYLE38_VERSION.tar.gz")
    fi
    start_pair pyle38
    echo "== pyle38 $PYLE38_VERSION: leader $LEADER_PORT, follower $FOLLOWER_PORT" >&2
    # The sdist's pyproject.toml carries the pytest settings (asyncio_mode).
    (cd "$src" && TILE38_LEADER_URI="redis://127.0.0.1:$LEADER_PORT" \
        TILE38_FOLLOWER_URI="redis://127.0.0.1:$FOLLOWER_PORT" \
        "$venv/bin/pytest" -q -p no:cacheprovider --junitxml="$WORK/pyle38.xml" tests \
        >"$WORK/pyle38.log" 2>&1) || true
    stop_pair
    summarize pyle38 "$PYLE38_VERSION" junit "$WORK/pyle38.xml"
}

run_tile38_ts() {
    local dir="$WORK/ts"
    mkdir -p "$dir"
    if [ ! -x "$dir/node_modules/.bin/jest" ] \
        || [ "$(node -p "require('$dir/node_modules/@iwpnd/tile38-ts/package.json').version" 2>/dev/null)" != "$TILE38_TS_VERSION" ]; then
        printf '{"private": true, "dependencies": {"@iwpnd/tile38-ts": "%s", "jest": "%s"}}\n' \
            "$TILE38_TS_VERSION" "$JEST_VERSION" >"$dir/package.json"
        (cd "$dir" && npm install -s --no-audit --no-fund)
    fi
    start_pair tile38-ts
    echo "== @iwpnd/tile38-ts $TILE38_TS_VERSION: leader $LEADER_PORT, follower $FOLLOWER_PORT" >&2
    # jest skips anything under node_modules, so the compiled package is
    # copied beside it; `require("..")` in the tests and the client's own
    # `require("ioredis")` resolve through $dir/node_modules.
    rm -rf "$dir/suite"
    mkdir -p "$dir/suite"
    cp -r "$dir/node_modules/@iwpnd/tile38-ts/dist" "$dir/suite/dist"
    cp "$dir/node_modules/@iwpnd/tile38-ts/package.json" "$dir/suite/package.json"
    find "$dir/suite/dist" -name '*.js' -exec \
        sed -i -e "s/\b9851\b/$LEADER_PORT/g" -e "s/\b9852\b/$FOLLOWER_PORT/g" {} +
    # The settings of the project's own jest.config.js (in its repository,
    # not in the package) that bear on the tests: mocks are cleared before
    # each test (the tests count a spy's calls per test) and a test may take
    # 10 s. Its ts-jest preset and coverage thresholds are for the
    # TypeScript sources and are left out.
    echo "module.exports = { testEnvironment: 'node', testTimeout: 10000, clearMocks: true };" \
        >"$dir/suite/jest.config.js"
    (cd "$dir/suite" && "$dir/node_modules/.bin/jest" --config jest.config.js --rootDir . --runInBand --ci --forceExit \
        --json --outputFile="$WORK/tile38-ts.json" >"$WORK/tile38-ts.log" 2>&1) || true
    stop_pair
    summarize tile38-ts "$TILE38_TS_VERSION" jest "$WORK/tile38-ts.json"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for s in "${SUITES[@]}"; do
    case "$s" in
        pyle38) run_pyle38 ;;
        tile38-ts) run_tile38_ts ;;
    esac
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(full runner output in $WORK/pyle38.log and $WORK/tile38-ts.log)"
