#!/bin/sh
# The primary's "archiver" sidecar (installed as /usr/local/bin/stackforge-archiver),
# when its tenant's WAL is archived (builders/archiving.py).
#
# 1. The stanza. pgBackRest's stanza-create makes the repository of this
#    database's incarnation (stackforge-pgbackrest names it), or checks that
#    the one there belongs to this database. Until it has, the server's
#    archive_command fails and PostgreSQL keeps the segments: it is retried
#    every RETRY_SECONDS.
# 2. A heartbeat. Every HEARTBEAT_SECONDS (half the server's archive_timeout)
#    one WAL record, a logical-decoding message that touches no table:
#    archive_timeout switches segments only when WAL was written, so a quiet
#    database would archive nothing, and the age of the newest archived segment
#    (what the operator reads from the bucket) could not tell a quiet database
#    from a broken archive. With one in every timeout's span, a segment reaches
#    the archive at every timeout while archiving works.
#
# Environment: the PGBACKREST_* options and STACKFORGE_REPOSITORY_BASE of
#   stackforge-pgbackrest; PGHOST [/var/run/postgresql]; HEARTBEAT_SECONDS [60];
#   RETRY_SECONDS [10].
set -u

: "${PGHOST:=/var/run/postgresql}"
: "${HEARTBEAT_SECONDS:=60}"
: "${RETRY_SECONDS:=10}"
export PGHOST

# On TERM the pause's sleep goes too: nothing of the sidecar outlives it.
sleeper=
trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM INT

pause() {
	sleep "$1" &
	sleeper=$!
	wait "$sleeper"
}

until stackforge-pgbackrest stanza-create; do
	echo "archiver: the stanza is not created yet; retrying in ${RETRY_SECONDS}s" >&2
	pause "$RETRY_SECONDS"
done
echo "archiver: stanza $PGBACKREST_STANZA is ready"

beating=
while :; do
	if psql --quiet --no-psqlrc --tuples-only --no-align --username=postgres --dbname=postgres \
		--command="SELECT pg_logical_emit_message(false, 'stackforge.heartbeat', now()::text)" \
		>/dev/null; then
		[ -n "$beating" ] || echo "archiver: heartbeat every ${HEARTBEAT_SECONDS}s"
		beating=1
	else
		echo "archiver: could not write the heartbeat; retrying" >&2
		beating=
	fi
	pause "$HEARTBEAT_SECONDS"
done
