#!/bin/sh
# A read replica's init container (installed as /usr/local/bin/stackforge-clone-replica).
#
# An empty volume is cloned from the primary with pg_basebackup, WAL streamed
# alongside so the copy is consistent on its own. A volume cloned before is
# kept: the replica resumes streaming where it stopped. Either way the data
# directory ends up private (0700, which a recursive fsGroup chown breaks) and
# marked as a standby.
#
# A clone goes to PGDATA.clone and is moved into place only once complete: a
# clone interrupted half-way leaves nothing a restart would take for a replica.
#
# With REPLICATION_SLOT, the clone holds the replica's slot on the primary
# from its first byte, so no WAL the replica needs is recycled between the
# copy and the replica's first connection. The primary's upkeep sidecar
# creates the slots of the replicas it knows; a replica that comes before the
# primary has heard of it has the primary create its slot here, and the
# primary drops any slot it was not told about once it is unused.
#
# Environment: PGDATA; PRIMARY_HOST; PRIMARY_PORT [5432]; REPLICATION_USER;
#   PGPASSWORD (the replication role's password, read by libpq);
#   REPLICATION_SLOT [none]
set -eu

: "${PGDATA:?PGDATA names the data directory}"
: "${PRIMARY_HOST:?PRIMARY_HOST names the primary to clone}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_USER:?REPLICATION_USER names the replication role}"
PGDATA=${PGDATA%/}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	clone="$PGDATA.clone"
	rm -rf "$PGDATA" "$clone" "$clone.err"
	echo "cloning $PRIMARY_HOST:$PRIMARY_PORT into $PGDATA" >&2
	set -- --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --username="$REPLICATION_USER" \
		--no-password --pgdata="$clone" --wal-method=stream --checkpoint=fast
	if [ -z "${REPLICATION_SLOT:-}" ]; then
		pg_basebackup "$@"
	elif ! pg_basebackup "$@" --slot="$REPLICATION_SLOT" 2>"$clone.err"; then
		cat "$clone.err" >&2
		grep -q "replication slot .* does not exist" "$clone.err" || exit 1
		rm -rf "$clone"
		echo "creating replication slot $REPLICATION_SLOT on the primary" >&2
		pg_basebackup "$@" --slot="$REPLICATION_SLOT" --create-slot
	fi
	rm -f "$clone.err"
	mv "$clone" "$PGDATA"
	echo "clone complete" >&2
fi
chmod 0700 "$PGDATA"
touch "$PGDATA/standby.signal"
