#!/bin/sh
# The primary's "archiver" sidecar (installed as /usr/local/bin/stackforge-archiver),
# when its tenant's WAL is archived (builders/archiving.py).
#
# 1. The stanza. pgBackRest's stanza-create makes the repository of this
#    database's incarnation (stackforge-pgbackrest names it), or checks that
#    the one there belongs to this database. Until it has, the server's
#    archive_command fails and PostgreSQL keeps the segments: it is retried
#    every RETRY_SECONDS.
# 2. A heartbeat. Every half of the server's archive_timeout (read at each
#    beat: the upkeep sidecar sets it without a restart; at least 5 s, 30 s
#    while it is unset; HEARTBEAT_SECONDS fixes it instead) one committed
#    transaction that touches no table (a transactional
#    logical-decoding message): archive_timeout switches segments only when
#    WAL was written, so a quiet database would archive nothing, and the age
#    of the newest archived segment (what the operator reads from the bucket)
#    could not tell a quiet database from a broken archive. With one in every
#    timeout's span, a segment reaches the archive at every timeout while
#    archiving works; and its commit record gives a restore to a moment a
#    commit later than that moment to stop at.
#    Each beat also records, in the postgres database's table
#    stackforge.heartbeat, its time and the WAL segment that holds its commit
#    (the insert position just after it). Once PostgreSQL reports that segment
#    archived (pg_stat_archiver), every moment before the beat is recoverable
#    from the archive: the primary's exporter serves the newest such beat
#    (builders/exporters.py), and the operator bounds the recoverability window
#    with it. The bucket cannot tell that: a segment's upload time is when it
#    arrived, which after an outage of the bucket is long after it was
#    written. Rows older than KEEP_BEATS_DAYS go.
# 3. Physical backups. REQUEST_FILE (the pod's request annotation, through the
#    downward API) holds "<id> <full|diff|incr> <count|time> <n>"; a request
#    with a newer id (ids are UTC times) runs one pgBackRest backup of that
#    type, in the background (the heartbeat goes on), whose expiry keeps n full
#    backups (count) or the full backups of n days (time). The id of the last
#    request done is kept in STATE_DIR, which outlives a restart of the
#    container: a request is run until it succeeds, once. One that failed is
#    run again BACKUP_RETRY_SECONDS later (a newer request at once): the
#    operator asks for a backup only when one is due, and a first full backup
#    is due until there is one. The result is the repository (a backup is
#    complete when its manifest is there); it is logged here too.
#    A backup waits up to BACKUP_ARCHIVE_TIMEOUT_SECONDS for the WAL of its
#    start and stop to be archived: after a bulk load the asynchronous
#    archive's queue can take many minutes, and pgBackRest's own default (60 s)
#    failed the first full backup of a freshly loaded database on the real node.
#
# Environment: the PGBACKREST_* options, STACKFORGE_REPOSITORY_BASE and
#   STACKFORGE_INCARNATION_FILE of stackforge-pgbackrest; PGHOST
#   [/var/run/postgresql]; HEARTBEAT_SECONDS [from archive_timeout];
#   RETRY_SECONDS [10];
#   REQUEST_FILE [none: no backups]; POLL_SECONDS [2]; STATE_DIR [/tmp];
#   BACKUP_RETRY_SECONDS [300]; BACKUP_ARCHIVE_TIMEOUT_SECONDS [3600];
#   KEEP_BEATS_DAYS [8].
set -uf  # f: no pathname expansion (the request is split into words)

: "${PGHOST:=/var/run/postgresql}"
: "${HEARTBEAT_SECONDS:=}"
: "${RETRY_SECONDS:=10}"
: "${REQUEST_FILE:=}"
: "${POLL_SECONDS:=2}"
: "${STATE_DIR:=/tmp}"
: "${BACKUP_RETRY_SECONDS:=300}"
: "${BACKUP_ARCHIVE_TIMEOUT_SECONDS:=3600}"
: "${KEEP_BEATS_DAYS:=8}"
export PGHOST
case $KEEP_BEATS_DAYS in
'' | *[!0-9]*)
	echo "archiver: KEEP_BEATS_DAYS must be a whole number of days, not '$KEEP_BEATS_DAYS'" >&2
	exit 2
	;;
esac

handled_file="$STATE_DIR/stackforge-backup-handled"
result_file="$STATE_DIR/stackforge-backup-result"

# On TERM the pause's sleep and a running backup go too: nothing of the
# sidecar outlives it (pgBackRest, stopped, leaves a backup the next one resumes).
sleeper=
backup=
stop() {
	[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null
	[ -z "$backup" ] || kill "$backup" 2>/dev/null
	exit 0
}
trap stop TERM INT

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

# The beat: the record (its own transaction, committed first), then the row
# saying which segment holds that commit. The row's time is the record's
# transaction's start, no later than its commit; the insert position after the
# commit is in the commit's segment or a later one, so the row never claims a
# moment that is not archived yet. The table is made by the first beat
# (IF NOT EXISTS: a restart, or a database restored with it, keeps it).
# Bounded: a session that holds a lock on the table (an Operator account may
# LOCK it) or a server that does not answer must not hold the loop, which
# also starts the backups and ends on TERM, for ever.
# Each row names the incarnation this server archives into (its repository,
# stackforge-pgbackrest): the operator reads the archive of the incarnation
# the primary writes, not of the newest one, which a database taken back to
# a volume kept from before a recovery no longer writes. The column is added
# to a table an older image made (a DO block: ALTER TABLE would take its lock
# at every beat).
beat_sql() {
	cat <<SQL
SET client_min_messages = warning;
SET lock_timeout = '5s';
SET statement_timeout = '20s';
CREATE SCHEMA IF NOT EXISTS stackforge;
CREATE TABLE IF NOT EXISTS stackforge.heartbeat (beat timestamptz PRIMARY KEY, segment text NOT NULL, incarnation text);
DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'stackforge.heartbeat'::regclass
                 AND attname = 'incarnation' AND NOT attisdropped) THEN
    ALTER TABLE stackforge.heartbeat ADD COLUMN incarnation text;
  END IF;
END\$\$;
SELECT now() AS beat, pg_logical_emit_message(true, 'stackforge.heartbeat', now()::text) AS lsn \gset
INSERT INTO stackforge.heartbeat (beat, segment, incarnation)
  VALUES (:'beat', pg_walfile_name(pg_current_wal_insert_lsn()), NULLIF(:'incarnation', ''))
  ON CONFLICT DO NOTHING;
DELETE FROM stackforge.heartbeat WHERE beat < now() - interval '$KEEP_BEATS_DAYS days';
SELECT setting FROM pg_settings WHERE name = 'archive_timeout';
SQL
}

# Seconds until the next beat: HEARTBEAT_SECONDS, else half the server's
# archive_timeout (seconds, as pg_settings gives it), at least 5; 30 while it is
# 0 or unknown (the upkeep sets it moments after the server's start).
beat_interval() {
	if [ -n "$HEARTBEAT_SECONDS" ]; then
		printf '%s' "$HEARTBEAT_SECONDS"
		return
	fi
	case $1 in
	'' | 0 | *[!0-9]*) printf '30' ;;
	*) half=$(($1 / 2)) && if [ "$half" -lt 5 ]; then printf '5'; else printf '%s' "$half"; fi ;;
	esac
}

# The incarnation's name as stackforge-pgbackrest reads it; empty when there is
# none (the row then names none, and the operator goes by the newest).
incarnation() {
	name=$(cat "${STACKFORGE_INCARNATION_FILE:-${PGDATA:-/var/lib/postgresql/data/pgdata}/stackforge-incarnation}" 2>/dev/null) || name=
	case $name in '' | *[!0-9A-Za-z-]*) name= ;; esac
	printf '%s' "$name"
}

beating=
interval=$(beat_interval '')
heartbeat() {
	if answer=$(beat_sql | PGCONNECT_TIMEOUT=5 psql --quiet --no-psqlrc --tuples-only \
		--no-align --set=ON_ERROR_STOP=1 --set=incarnation="$(incarnation)" \
		--username=postgres --dbname=postgres); then
		was=$interval
		interval=$(beat_interval "$(printf '%s\n' "$answer" | tail -n 1)")
		[ -n "$beating" ] && [ "$interval" = "$was" ] ||
			echo "archiver: heartbeat every ${interval}s"
		beating=1
	else
		echo "archiver: could not write the heartbeat; retrying" >&2
		beating=
	fi
}

# Runs in a subshell of its own: it writes pgBackRest's exit status to
# result_file, and stops pgBackRest when it is stopped.
run_backup() {
	id=$1 type=$2 retention_type=$3 retention=$4
	(
		pgbackrest_pid=
		trap '[ -z "$pgbackrest_pid" ] || kill "$pgbackrest_pid" 2>/dev/null; exit 143' TERM
		stackforge-pgbackrest backup --type="$type" --start-fast \
			--archive-timeout="$BACKUP_ARCHIVE_TIMEOUT_SECONDS" \
			--repo1-retention-full-type="$retention_type" --repo1-retention-full="$retention" \
			--annotation=stackforge-request="$id" &
		pgbackrest_pid=$!
		wait "$pgbackrest_pid"
		echo "$id $?" >"$result_file"
	) &
	backup=$!
}

# The request, if it is one and newer than the last handled: "id type retention-type n".
ignored=
new_request() {
	[ -n "$REQUEST_FILE" ] && [ -r "$REQUEST_FILE" ] || return 1
	request=$(cat "$REQUEST_FILE")
	[ -n "$request" ] || return 1
	# Word splitting is meant: the request is four words.
	# shellcheck disable=SC2086
	set -- $request
	if [ $# -ne 4 ] || ! valid_request "$@"; then
		# Said once; it is not handled, so that it cannot hide a later request.
		[ "$request" = "$ignored" ] ||
			echo "archiver: ignoring the backup request '$request' (not <id> <full|diff|incr> <count|time> <n>)" >&2
		ignored=$request
		return 1
	fi
	# Ids are times (YYYYMMDDTHHMMSSZ): only one newer than the last handled is new.
	handled=$(cat "$handled_file" 2>/dev/null) || handled=
	[ -z "$handled" ] || expr "x$1" \> "x$handled" >/dev/null
}

valid_request() {
	case $1 in [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) ;; *) return 1 ;; esac
	case $2 in full | diff | incr) ;; *) return 1 ;; esac
	case $3 in count | time) ;; *) return 1 ;; esac
	case $4 in '' | *[!0-9]*) return 1 ;; esac
	return 0
}

next_beat=0
running=
failed=
retry_at=0
while :; do
	now=$(date +%s)
	if [ "$now" -ge "$next_beat" ]; then
		heartbeat
		next_beat=$((now + interval))
	fi
	if [ -n "$running" ] && [ -s "$result_file" ]; then
		read -r finished status <"$result_file"
		if [ "$status" = 0 ]; then
			echo "archiver: backup request $finished is complete"
			echo "$finished" >"$handled_file"
			failed=
		else
			echo "archiver: backup request $finished failed (pgBackRest exit status $status);" \
				"retrying in ${BACKUP_RETRY_SECONDS}s" >&2
			failed=$finished
			retry_at=$((now + BACKUP_RETRY_SECONDS))
		fi
		running=
		backup=
	fi
	if [ -z "$running" ] && new_request; then
		# shellcheck disable=SC2086
		set -- $request
		if [ "$1" != "$failed" ] || [ "$now" -ge "$retry_at" ]; then
			echo "archiver: backup request $1: a $2 backup (retention: $4 by $3)"
			rm -f "$result_file"
			run_backup "$@"
			running=$1
		fi
	fi
	pause "$POLL_SECONDS"
done
