#!/usr/bin/env bash
# Start a Docker engine the way CI does: Debian's docker.io, dockerd in the background.
# Idempotent: installs only what is missing, starts dockerd only if no engine answers.
# Also installs debootstrap (stand-in base image) and docker-compose (v1, for `config`).
# Env: DOCKERD_LOG (default /var/log/dockerd.log), DOCKERD_TIMEOUT seconds (default 60).
set -euo pipefail
[[ $EUID -eq 0 ]] || exec sudo -E "$0" "$@"

log=${DOCKERD_LOG:-/var/log/dockerd.log}
timeout=${DOCKERD_TIMEOUT:-60}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ((${#missing[@]})); then
    echo "start-engine: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Lists fetched moments ago (install-system-deps.sh in CI) will do; else fetch them.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
fi

if docker info >/dev/null 2>&1; then
    echo "start-engine: engine already running"
    exit 0
fi

if ! pgrep -x dockerd >/dev/null; then
    echo "start-engine: starting dockerd (log: $log)"
    nohup dockerd >>"$log" 2>&1 </dev/null &
fi

deadline=$((SECONDS + timeout))
until docker info >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        echo "start-engine: dockerd did not answer within ${timeout}s; end of $log:" >&2
        tail -n 30 "$log" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "start-engine: engine ready (server $(docker version --format '{{.Server.Version}}'))"
