#!/bin/sh
# The pooler's init container (installed as /usr/local/bin/stackforge-pgbouncer-userlist).
#
# Writes PgBouncer's auth file from the credentials in its environment (the
# tenant's Secret): one line, the application role and its password, each in
# double quotes, a '"' inside doubled as PgBouncer's format wants. PgBouncer
# takes a plain-text password there for auth_type scram-sha-256, and with it
# also logs in to PostgreSQL with SCRAM. umask 077: only the pooler's user
# reads the file (which lives on a memory-backed volume).
#
# Environment: DB_USER; DB_PASSWORD; USERLIST_FILE [/var/run/pgbouncer-auth/userlist.txt]
set -eu

: "${DB_USER:?DB_USER must be set}"
: "${DB_PASSWORD:?DB_PASSWORD must be set}"
: "${USERLIST_FILE:=/var/run/pgbouncer-auth/userlist.txt}"

quoted() {
	printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"
}

umask 077
# Written next to its final name, then renamed: PgBouncer never reads half a file.
printf '%s %s\n' "$(quoted "$DB_USER")" "$(quoted "$DB_PASSWORD")" >"$USERLIST_FILE.new"
mv "$USERLIST_FILE.new" "$USERLIST_FILE"
echo "wrote $USERLIST_FILE for $DB_USER" >&2
