#!/bin/sh
# Start PostgreSQL in a bullproof container.
#
#   serve            initialise $PGDATA from the environment on first start
#                    (POSTGRES_PASSWORD required; POSTGRES_USER and
#                    POSTGRES_DB default to bullproof), then run the server on
#                    127.0.0.1:${POSTGRES_PORT:-5432}
#   anything else    run it as given; the containers provider passes its own
#                    data directory and settings
#
# PostgreSQL refuses to run as root: started as root, the script hands its
# data directory to the postgres user and runs again as that user.
# BULLPROOF_LOG, when set, is a file the server's output is appended to.
set -eu

die() {
    echo "bullproof-postgres: $*" >&2
    exit 64
}

run() {
    if [ -n "${BULLPROOF_LOG:-}" ]; then
        exec "$@" >>"$BULLPROOF_LOG" 2>&1
    fi
    exec "$@"
}

if [ "${1:-serve}" != serve ]; then
    run "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

user="${POSTGRES_USER:-bullproof}"
db="${POSTGRES_DB:-bullproof}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    [ -n "${POSTGRES_PASSWORD:-}" ] || die "POSTGRES_PASSWORD must be set"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions -D "$PGDATA"
    rm -f "$pwfile"
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \"$db\"" |
            postgres --single -D "$PGDATA" -c exit_on_error=on postgres >/dev/null
    fi
fi

run postgres -D "$PGDATA" -c listen_addresses=127.0.0.1 \
    -c port="${POSTGRES_PORT:-5432}" -c unix_socket_directories=/var/run/postgresql
