#!/bin/sh
# Initialise the data directory on first start (user, password, database from the environment),
# then run the server in the foreground. Mirrors the official postgres image's variables:
# POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB (each also as a *_FILE naming a file that holds
# it, e.g. a Compose secret), POSTGRES_INITDB_ARGS, PGDATA, PGPORT.
set -eu
for name in POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB; do
    eval "file=\${${name}_FILE:-}"
    eval "value=\${${name}:-}"
    if [ -n "$file" ] && [ -n "$value" ]; then
        echo "postgres-entrypoint: both $name and ${name}_FILE are set (they are exclusive)" >&2
        exit 1
    fi
    if [ -n "$file" ]; then
        eval "$name=\$(cat \"\$file\")"
        export "$name"
    fi
done
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    if [ "$POSTGRES_DB" != "postgres" ]; then
        echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" \
            | postgres --single -D "$PGDATA" -c log_min_messages=warning postgres >/dev/null
    fi
    echo "postgres-entrypoint: initialised $PGDATA (database $POSTGRES_DB)"
fi
if [ "${1:-}" = "postgres" ]; then
    shift
    exec postgres -c listen_addresses="${POSTGRES_LISTEN_ADDRESSES:-*}" \
        -c unix_socket_directories=/tmp "$@"
fi
exec "$@"
