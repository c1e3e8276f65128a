#!/bin/sh
# A read replica's readiness probe (installed as /usr/local/bin/stackforge-replica-ready).
#
# Ready only while the replica streams WAL from a primary: a replica that
# answers queries but has lost its primary (or the WAL it needs) serves ever
# older data, and must leave the read Service until it streams again. Exits 0
# when a WAL receiver has been "streaming" for STREAMING_SECONDS, 1 otherwise,
# with the reason.
#
# Why the wait: PostgreSQL 15's WAL receiver says "streaming" from the moment
# it has connected, before the primary has accepted START_REPLICATION. One the
# primary refuses (its slot was invalidated, the WAL it needs is gone) lives
# a few milliseconds, and another comes every wal_retrieve_retry_interval
# (5 s): a probe must never catch one of those. A caught-up receiver hears
# nothing from an idle primary until its keepalive, so the age of the
# receiver, not a message, is what tells them apart.
#
# Environment: PGHOST [/var/run/postgresql]; PGPORT [5432]; STREAMING_SECONDS [1]
set -eu

: "${PGHOST:=/var/run/postgresql}"
: "${STREAMING_SECONDS:=1}"
export PGHOST
case "$STREAMING_SECONDS" in
'' | *[!0-9]*)
	echo "not ready: STREAMING_SECONDS must be a whole number of seconds" >&2
	exit 1
	;;
esac

status=$(psql --no-psqlrc --quiet --tuples-only --no-align --username=postgres \
	--dbname=postgres --set=seconds="$STREAMING_SECONDS" <<'SQL'
SELECT CASE
    WHEN r.status IS NULL THEN 'no WAL receiver'
    WHEN r.status <> 'streaming' THEN r.status
    WHEN a.backend_start IS NULL
      OR a.backend_start > now() - make_interval(secs => :seconds)
      THEN 'the WAL receiver connected less than ' || :seconds || ' s ago'
    ELSE 'streaming'
  END
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_wal_receiver AS r ON true
LEFT JOIN pg_stat_activity AS a ON a.pid = r.pid
SQL
) || {
	echo "not ready: the server does not answer" >&2
	exit 1
}
if [ "$status" != streaming ]; then
	echo "not ready: $status" >&2
	exit 1
fi
