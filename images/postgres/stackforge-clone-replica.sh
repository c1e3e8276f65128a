#!/bin/sh
# A read replica's start (installed as /usr/local/bin/stackforge-clone-replica):
# prepares the data directory, then execs its arguments (the server).
#
# An empty volume is cloned from the primary with pg_basebackup, WAL streamed
# alongside so the copy is consistent on its own. A volume cloned before is
# kept: the replica resumes streaming where it stopped, unless RECLONE_MARKER
# is there: the liveness probe (stackforge-replica-follows) proved that this
# copy can never follow the primary again, so it is thrown away and cloned
# anew (the marker goes once the new clone is complete). Either way the data
# directory ends up private (0700, which a recursive fsGroup chown breaks)
# and marked as a standby.
#
# A clone goes to PGDATA.clone and is moved into place only once complete: a
# clone interrupted half-way leaves nothing a restart would take for a replica.
#
# With REPLICATION_SLOT, the clone holds the replica's slot on the primary
# from its first byte, so no WAL the replica needs is recycled between the
# copy and the replica's first connection. The primary's upkeep sidecar
# creates the slots of the replicas it knows; a replica that comes before the
# primary has heard of it has the primary create its slot here, and the
# primary drops any slot it was not told about once it is unused. A slot the
# primary invalidated is dropped here first: it can hold nothing any more.
#
# Environment: PGDATA; PRIMARY_HOST; PRIMARY_PORT [5432]; REPLICATION_USER;
#   PGPASSWORD (the replication role's password, read by libpq);
#   REPLICATION_SLOT [none]; RECLONE_MARKER [$PGDATA.reclone];
#   PRIMARY_WAIT_INTERVAL [2] (seconds between asking whether the primary answers)
set -eu

: "${PGDATA:?PGDATA names the data directory}"
: "${PRIMARY_HOST:?PRIMARY_HOST names the primary to clone}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_USER:?REPLICATION_USER names the replication role}"
PGDATA=${PGDATA%/}
: "${RECLONE_MARKER:=$PGDATA.reclone}"

# The container's first process: a signal without a handler is ignored there,
# so a replica deleted while it waited for its primary or cloned waited out its
# whole grace period, then was killed. Long steps run in the background
# (in_background) because a shell takes a trap only between commands.
child=
stop() {
	[ -z "$child" ] || kill "$child" 2>/dev/null || true
	exit 143
}
trap stop INT TERM

in_background() {
	"$@" &
	child=$!
	status=0
	wait "$child" || status=$?
	child=
	return "$status"
}

drop_invalidated_slot() {
	psql --no-psqlrc --quiet --tuples-only --no-align --set=ON_ERROR_STOP=1 \
		--host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --username="$REPLICATION_USER" \
		--no-password --dbname=postgres --set=slot="$REPLICATION_SLOT" <<'SQL'
SELECT 'dropped invalidated slot ' || slot_name || ' on the primary'
       || pg_drop_replication_slot(slot_name)::text
FROM pg_replication_slots
WHERE slot_name = :'slot' AND wal_status = 'lost' AND NOT active
SQL
}

# Replicas start beside their primary: waiting here, rather than failing into
# a restart back-off, lets them clone as soon as it answers.
wait_for_primary() {
	waited=0
	until pg_isready --quiet --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --timeout=3; do
		if [ $((waited % 15)) -eq 0 ]; then
			echo "waiting for the primary $PRIMARY_HOST:$PRIMARY_PORT to answer" >&2
		fi
		waited=$((waited + 1))
		in_background sleep "${PRIMARY_WAIT_INTERVAL:-2}"
	done
}

# A primary restored to a moment (a clone's bootstrap, an in-place recovery)
# keeps the recovery settings pgBackRest wrote into its postgresql.auto.conf:
# the server never removes them and ignores them once promoted. pg_basebackup
# copies that file, and a standby obeys them: it stopped at that old target at
# its first later commit, then failed for ever or promoted itself. A replica's
# own settings come from its command line.
forget_restore_settings() {
	[ -f "$1" ] || return 0
	sed -i -e '/^[[:space:]]*recovery_target/d' -e '/^[[:space:]]*restore_command/d' "$1"
}

# A function: its "set --" leaves the script's arguments (the server) alone.
clone_from_primary() {
	clone="$PGDATA.clone"
	rm -rf "$PGDATA" "$clone" "$clone.err"
	wait_for_primary
	echo "cloning $PRIMARY_HOST:$PRIMARY_PORT into $PGDATA" >&2
	set -- --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --username="$REPLICATION_USER" \
		--no-password --pgdata="$clone" --wal-method=stream --checkpoint=fast
	if [ -z "${REPLICATION_SLOT:-}" ]; then
		in_background pg_basebackup "$@"
	elif ! in_background pg_basebackup "$@" --slot="$REPLICATION_SLOT" 2>"$clone.err"; then
		cat "$clone.err" >&2
		grep -q "replication slot .* does not exist" "$clone.err" || exit 1
		rm -rf "$clone"
		echo "creating replication slot $REPLICATION_SLOT on the primary" >&2
		in_background pg_basebackup "$@" --slot="$REPLICATION_SLOT" --create-slot
	fi
	rm -f "$clone.err"
	mv "$clone" "$PGDATA"
	rm -f "$RECLONE_MARKER"
	echo "clone complete" >&2
}

if [ -e "$RECLONE_MARKER" ]; then
	echo "re-cloning: $(cat "$RECLONE_MARKER")" >&2
	rm -rf "$PGDATA"
	if [ -n "${REPLICATION_SLOT:-}" ]; then
		wait_for_primary
		drop_invalidated_slot >&2
	fi
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	clone_from_primary
fi
# Every start, a new clone's and one an older image made alike.
forget_restore_settings "$PGDATA/postgresql.auto.conf"
chmod 0700 "$PGDATA"
touch "$PGDATA/standby.signal"
if [ $# -gt 0 ]; then
	exec "$@"
fi
