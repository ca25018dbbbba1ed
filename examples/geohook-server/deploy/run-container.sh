#!/usr/bin/env bash
# Runs geohook-server in a container with a memory limit by default.
#
# Environment (unset = the default; an empty value turns a limit off):
#   GEOHOOK_MEMORY   container memory limit, default 1g; empty = no limit.
#                    Swap is limited to the same figure, so the limit is real.
#   GEOHOOK_IMAGE    image, default geohook-server:latest
#   GEOHOOK_DATA     host data directory, default ./data (made absolute)
#   GEOHOOK_PORT     host port, default 9851
#   GEOHOOK_NAME     container name, default geohook
#   GEOHOOK_ENGINE   docker or podman, default docker (podman if docker is
#                    not installed)
#   MEMWATCH_THRESHOLD, MEMWATCH_SOFT_THRESHOLD
#                    passed to the server when set, even when empty (empty =
#                    off); unset leaves the server's defaults (90 % and 80 %
#                    of the container's limit)
#   DRY_RUN=1        print the command line instead of running it
#
# Arguments after the options are passed to the server, e.g.
#   run-container.sh --requirepass secret
# (the server listens on all addresses inside the container; without a
# password its protected mode refuses clients that are not on loopback).
#
# The container restarts on a non-zero exit: 2 is memwatch's orderly stop
# under memory pressure, 137 a kill by the kernel.
set -euo pipefail

memory=${GEOHOOK_MEMORY-1g}
image=${GEOHOOK_IMAGE:-geohook-server:latest}
data=$(realpath -m "${GEOHOOK_DATA:-./data}")
port=${GEOHOOK_PORT:-9851}
name=${GEOHOOK_NAME:-geohook}
engine=${GEOHOOK_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1; then
    engine=docker
  else
    engine=podman
  fi
fi

args=(run --name "$name" --restart on-failure --stop-signal SIGTERM --stop-timeout 30
  -p "$port:9851" -v "$data:/data")
if [ -n "$memory" ]; then
  args+=(--memory "$memory" --memory-swap "$memory")
fi
for var in MEMWATCH_THRESHOLD MEMWATCH_SOFT_THRESHOLD; do
  if [ -n "${!var+set}" ]; then
    args+=(-e "$var=${!var}")
  fi
done
args+=("$image" --dir /data --bind 0.0.0.0 --port 9851 "$@")

if [ "${DRY_RUN:-}" = 1 ]; then
  printf '%q' "$engine"
  printf ' %q' "${args[@]}"
  printf '\n'
else
  exec "$engine" "${args[@]}"
fi
