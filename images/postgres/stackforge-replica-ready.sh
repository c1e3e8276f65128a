#!/bin/sh
# A read replica's readiness probe (installed as /usr/local/bin/stackforge-replica-ready).
#
# Ready only while the replica streams WAL from a primary: a replica that
# answers queries but has lost its primary (or the WAL it needs) serves ever
# older data, and must leave the read Service until it streams again. Exits 0
# when the WAL receiver's status is "streaming", 1 otherwise, with the reason.
#
# Environment: PGHOST [/var/run/postgresql]; PGPORT [5432]
set -eu

: "${PGHOST:=/var/run/postgresql}"
export PGHOST

status=$(psql --no-psqlrc --quiet --tuples-only --no-align --username=postgres \
	--dbname=postgres --command="SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'no WAL receiver')") || {
	echo "not ready: the server does not answer" >&2
	exit 1
}
if [ "$status" != streaming ]; then
	echo "not ready: $status" >&2
	exit 1
fi
