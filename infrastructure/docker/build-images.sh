#!/usr/bin/env bash
# Build both images from the repo's Dockerfile: ytmp3:latest (target flows: the Docker
# pool's flow runs and the worker) and ytmp3-ui:latest (target ui: the page and the
# Prefect server). Extra arguments go to both `docker build`s.
#   build-images.sh [--offline] [docker build args...]
# --offline: for machines that reach no container registry and whose containers cannot
# reach the package index (like CI here): builds the stand-in base image
# (make-base-image.sh), serves the wheels from this host (serve_wheels.py) for the build,
# and passes BASE_IMAGE and PIP_* as build args. Nothing else differs.
# Env: PYTHON (default .venv/bin/python), WHEELS_PORT (default 3141),
# YTMP3_IMAGE / YTMP3_UI_IMAGE (the tags).
set -euo pipefail
cd "$(dirname "$0")/../.."

flows_tag=${YTMP3_IMAGE:-ytmp3:latest}
ui_tag=${YTMP3_UI_IMAGE:-ytmp3-ui:latest}
args=()
if [[ "${1:-}" == "--offline" ]]; then
    shift
    python=${PYTHON:-.venv/bin/python}
    port=${WHEELS_PORT:-3141}
    stand_in=ytmp3-stand-in:bookworm
    infrastructure/docker/make-base-image.sh "$stand_in"
    host=$("$python" infrastructure/docker/bridge.py)
    "$python" infrastructure/docker/serve_wheels.py --host "$host" --port "$port" &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    until "$python" -c "import socket, sys; socket.create_connection(('$host', $port), 1)" \
        2>/dev/null; do
        kill -0 "$server" 2>/dev/null || { echo "build-images: serve_wheels.py failed" >&2; exit 1; }
        sleep 0.5
    done
    args+=(--build-arg "BASE_IMAGE=$stand_in" --build-arg PIP_NO_INDEX=1
        --build-arg "PIP_FIND_LINKS=http://$host:$port/" --build-arg "PIP_TRUSTED_HOST=$host")
fi

# The classic builder builds every stage above the target: the first build does all the
# work, the second one only tags what is cached.
docker build "${args[@]}" "$@" --target flows -t "$flows_tag" .
docker build "${args[@]}" "$@" --target ui -t "$ui_tag" .
for tag in "$flows_tag" "$ui_tag"; do
    echo "build-images: $tag $(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=si)B"
done
