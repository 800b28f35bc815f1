#!/usr/bin/env bash
# Install the Debian packages ytmp3 needs to run: ffmpeg, and python3-venv for `make`.
# With --test, also what the test suite uses: Chromium (browser tests), and the Docker
# engine with debootstrap (Docker tests; see infrastructure/docker/).
# Idempotent: does nothing when everything is already there.
set -euo pipefail

packages=()
command -v ffmpeg >/dev/null || packages+=(ffmpeg)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
if [[ "${1:-}" == "--test" ]]; then
    command -v chromium >/dev/null || packages+=(chromium)
    command -v dockerd >/dev/null || packages+=(docker.io)
    command -v debootstrap >/dev/null || packages+=(debootstrap)
fi
[[ ${#packages[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "ytmp3 needs these Debian packages: ${packages[*]}" >&2
    echo "install them as root: apt-get install ${packages[*]}" >&2
    exit 1
fi
echo "installing ${packages[*]} ..."
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
