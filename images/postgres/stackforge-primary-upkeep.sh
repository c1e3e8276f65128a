#!/bin/sh
# The primary's "upkeep" sidecar (installed as /usr/local/bin/stackforge-primary-upkeep).
#
# 1. Role passwords. At every start of the pod it sets the superuser's, the
#    application role's and the replication role's passwords to the ones in
#    its environment (the tenant's credentials Secret): a credentials rotation
#    restarts the pod, and from then on the server must accept the new
#    passwords and refuse the old. It logs in by peer over the Unix socket (the
#    OS user is "postgres"), which needs no password, so the old one being
#    already forgotten does not matter. Until the server is up and the roles
#    exist it retries; once done it creates READY_MARKER (the container's
#    readiness probe).
# 2. Replication slots, every SLOT_SYNC_SECONDS for as long as the pod runs:
#    one physical slot per read replica, named in SLOTS_FILE (one name a line,
#    the operator's ConfigMap, which the kubelet refreshes without a restart).
#    A missing slot is created, reserving WAL at once. A slot of ours
#    (SLOT_PREFIX) that is no longer listed is dropped once it has been unused
#    at two passes in a row: a replica being scaled away may hold its slot for
#    a moment, and a list a little behind a scale-up must not drop the slot a
#    new replica is about to use. Slots of any other name are not ours.
#
# Environment: POSTGRES_USER POSTGRES_PASSWORD APP_USER APP_PASSWORD
#   REPLICATION_USER REPLICATION_PASSWORD; PGHOST [/var/run/postgresql];
#   READY_MARKER [/tmp/role-passwords-synced]; RETRY_SECONDS [5];
#   SLOTS_FILE [none: no slot is managed]; SLOT_PREFIX [postgres_replica_];
#   SLOT_SYNC_SECONDS [10]
set -u

: "${PGHOST:=/var/run/postgresql}"
: "${READY_MARKER:=/tmp/role-passwords-synced}"
: "${RETRY_SECONDS:=5}"
: "${SLOTS_FILE:=}"
: "${SLOT_PREFIX:=postgres_replica_}"
: "${SLOT_SYNC_SECONDS:=10}"
export PGHOST
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${APP_USER:?APP_USER must be set}"
: "${APP_PASSWORD:?APP_PASSWORD must be set}"
: "${REPLICATION_USER:?REPLICATION_USER must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"

trap 'exit 0' TERM INT
rm -f "$READY_MARKER"

# A sleep in the background and wait: TERM then ends the pod at once.
pause() {
	sleep "$1" &
	wait $!
}

as_superuser() {
	psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc --tuples-only --no-align \
		--username=postgres --dbname=postgres "$@"
}

sync_passwords() {
	as_superuser \
		--set=superuser="$POSTGRES_USER" --set=superuser_password="$POSTGRES_PASSWORD" \
		--set=app_user="$APP_USER" --set=app_password="$APP_PASSWORD" \
		--set=repl_user="$REPLICATION_USER" --set=repl_password="$REPLICATION_PASSWORD" <<'SQL'
ALTER ROLE :"superuser" PASSWORD :'superuser_password';
ALTER ROLE :"app_user" PASSWORD :'app_password';
ALTER ROLE :"repl_user" PASSWORD :'repl_password';
SQL
}

# The slots to create or drop, one pass. "unused_before" carries the names
# that were unlisted and unused at the previous pass, comma-separated.
sync_slots() {
	wanted=$(tr -s ' \t\r\n' ',' <"$SLOTS_FILE" 2>/dev/null | sed 's/^,//; s/,$//')
	as_superuser --set=wanted="$wanted" --set=prefix="$SLOT_PREFIX" \
		--set=unused_before="$unused_before" <<'SQL'
SELECT 'created ' || (pg_create_physical_replication_slot(name, true)).slot_name
  FROM unnest(string_to_array(:'wanted', ',')) AS name
 WHERE name <> '' AND name NOT IN (SELECT slot_name FROM pg_replication_slots);
SELECT 'dropped ' || slot_name
  FROM (SELECT slot_name, pg_drop_replication_slot(slot_name)
          FROM pg_replication_slots
         WHERE slot_type = 'physical' AND starts_with(slot_name, :'prefix') AND NOT active
           AND slot_name <> ALL (string_to_array(:'wanted', ','))
           AND slot_name = ANY (string_to_array(:'unused_before', ','))) AS dropped;
SELECT 'unused ' || string_agg(slot_name, ',')
  FROM pg_replication_slots
 WHERE slot_type = 'physical' AND starts_with(slot_name, :'prefix') AND NOT active
   AND slot_name <> ALL (string_to_array(:'wanted', ','));
SQL
}

until sync_passwords; do
	pause "$RETRY_SECONDS"
done
touch "$READY_MARKER"
echo "role passwords match the credentials Secret"

unused_before=
while :; do
	if [ -n "$SLOTS_FILE" ]; then
		if report=$(sync_slots); then
			printf '%s\n' "$report" | while read -r verb rest; do
				case "$verb" in
				created | dropped) echo "replication slot $rest $verb" ;;
				esac
			done
			unused_before=$(printf '%s\n' "$report" | sed -n 's/^unused //p')
		else
			echo "could not bring the replication slots in line with $SLOTS_FILE; retrying" >&2
		fi
		pause "$SLOT_SYNC_SECONDS"
	else
		pause 3600
	fi
done
