#!/bin/sh
# pgBackRest in this database's own repository (installed as /usr/local/bin/stackforge-pgbackrest).
#
# Every option comes from the environment (PGBACKREST_*, which pgBackRest reads
# itself; the operator's builders/archiving.py sets them) but the repository's
# path: STACKFORGE_REPOSITORY_BASE/<incarnation>, the incarnation read from
# STACKFORGE_INCARNATION_FILE, which the entrypoint writes once per database.
# Each incarnation of a tenant's database (an initdb, a restore) so archives
# apart from every other: WAL of an older one can never break a later restore.
# The arguments are pgBackRest's ("archive-push %p", "stanza-create", "info").
set -eu

die() {
	printf 'stackforge-pgbackrest: %s\n' "$*" >&2
	exit 1
}

: "${STACKFORGE_REPOSITORY_BASE:?STACKFORGE_REPOSITORY_BASE must be set}"
: "${STACKFORGE_INCARNATION_FILE:=${PGDATA:-/var/lib/postgresql/data/pgdata}/stackforge-incarnation}"

[ -r "$STACKFORGE_INCARNATION_FILE" ] ||
	die "no incarnation file $STACKFORGE_INCARNATION_FILE (the entrypoint writes it at the server's start)"
incarnation=$(cat "$STACKFORGE_INCARNATION_FILE")
case $incarnation in
'' | *[!0-9A-Za-z-]*) die "$STACKFORGE_INCARNATION_FILE holds no incarnation name: '$incarnation'" ;;
esac

PGBACKREST_REPO1_PATH="${STACKFORGE_REPOSITORY_BASE%/}/$incarnation"
export PGBACKREST_REPO1_PATH
exec pgbackrest "$@"
