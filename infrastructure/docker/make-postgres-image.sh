#!/usr/bin/env bash
# Build a stand-in for the official postgres image, for machines that reach no container
# registry: Debian's postgresql package on the stand-in base (make-base-image.sh), with the
# official image's variables, data dir and first-start initialisation (postgres/).
# Usage: make-postgres-image.sh [NAME] [BASE_IMAGE]
#   (defaults ytmp3-postgres:stand-in and ytmp3-stand-in:bookworm, made if missing)
# Then: POSTGRES_IMAGE=NAME docker-compose -f infrastructure/compose.yml up -d
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${1:-ytmp3-postgres:stand-in}
base=${2:-ytmp3-stand-in:bookworm}

docker image inspect "$base" >/dev/null 2>&1 || "$here/make-base-image.sh" "$base"
docker build --quiet --build-arg "BASE_IMAGE=$base" -t "$name" "$here/postgres" >/dev/null
echo "make-postgres-image: $name ($(docker image inspect -f '{{.Size}}' "$name" | numfmt --to=si)B)"
