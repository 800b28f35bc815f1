#!/usr/bin/env bash
# Entrypoint of the stand-in postgres image, after the official image's:
#   POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required on first start), POSTGRES_USER
#   (default postgres), POSTGRES_DB (default: the user's name), PGDATA.
# As root: reads the password file, prepares PGDATA, then runs itself as `postgres`. An
# empty PGDATA is initialised (password auth over TCP, trust on the local socket only),
# with no TCP listener until that is done, so pg_isready -h 127.0.0.1 means ready.
set -euo pipefail

if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

if [[ -n ${POSTGRES_PASSWORD_FILE:-} ]]; then
    POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE")
    export POSTGRES_PASSWORD
    unset POSTGRES_PASSWORD_FILE
fi

if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    echo "docker-entrypoint: initialising $PGDATA (user $user, database $db)"
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [[ $db != postgres ]]; then
        pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
        createdb --username="$user" "$db"
        pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    fi
fi
unset POSTGRES_PASSWORD
shift
exec postgres -c listen_addresses='*' "$@"
