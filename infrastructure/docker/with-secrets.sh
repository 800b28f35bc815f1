#!/usr/bin/env bash
# with-secrets.sh DIR COMMAND [ARG...]: run COMMAND with every file in DIR exported as the
# environment variable of the same name (the compose services' entrypoint; compose's
# `secrets` service writes DIR from infrastructure/.env, see compose_secrets.py).
# Values stay out of `docker inspect` and the compose file; nothing is printed. No
# secret at all is an error: a server must not start without its password.
set -euo pipefail
dir=$1
shift
found=0
for file in "$dir"/*; do
    [[ -f $file ]] || continue
    name=${file##*/}
    [[ $name =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    export "$name=$(<"$file")"
    found=$((found + 1))
done
if ((found == 0)); then
    echo "with-secrets: no secrets in $dir (compose's secrets service writes them)" >&2
    exit 1
fi
exec "$@"
