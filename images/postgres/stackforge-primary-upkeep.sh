#!/bin/sh
# The primary's "upkeep" sidecar (installed as /usr/local/bin/stackforge-primary-upkeep).
#
# 1. Role passwords. At every start of the pod it sets the superuser's, the
#    application role's and the replication role's passwords to the ones in
#    its environment (the tenant's credentials Secret): a credentials rotation
#    restarts the pod, and from then on the server must accept the new
#    passwords and refuse the old. It logs in by peer over the Unix socket (the
#    OS user is "postgres"), which needs no password, so the old one being
#    already forgotten does not matter. Until the server is up, out of
#    recovery and the roles exist it retries; once done it creates
#    READY_MARKER (the container's readiness probe).
# 2. Replication slots, every SLOT_SYNC_SECONDS for as long as the pod runs:
#    one physical slot per read replica, named in SLOTS_FILE (one name a line,
#    the operator's ConfigMap, which the kubelet refreshes without a restart).
#    A missing slot is created, reserving WAL at once. A slot of ours
#    (SLOT_PREFIX) that is no longer listed is dropped once it has been unused
#    at two passes in a row: a replica being scaled away may hold its slot for
#    a moment, and a list a little behind a scale-up must not drop the slot a
#    new replica is about to use. Slots of any other name are not ours.
#    SLOT_WAL_LIMIT_FILE holds max_slot_wal_keep_size in megabytes: set with
#    ALTER SYSTEM and a reload whenever it differs from the server's, so the
#    WAL a missing replica holds back cannot fill the primary's volume.
#    ARCHIVE_TIMEOUT_FILE holds archive_timeout in seconds, set the same way
#    (a -c argument would outrank ALTER SYSTEM, and changing one restarts the
#    pod); empty resets it (archiving was turned off: the checkpointer would
#    still switch segments at every timeout).
# 3. Admin accounts, at the same passes, whenever ADMIN_ACCOUNTS_FILE changes
#    (a JSON list of {"name", "role", "password"}, from a Secret volume the
#    kubelet refreshes): each becomes a login role in POSTGRES_DB's cluster,
#    member of the group role stackforge_admin_accounts, with its password and
#    the privileges of its role: Admin is a member of the database owner's
#    role, Operator gets pg_read_all_data, pg_write_all_data and pg_monitor,
#    Viewer pg_read_all_data. A member of the group no longer listed loses its
#    login (NOLOGIN) but keeps what it owns. A role of a listed name that is
#    not a member of the group is not ours and is left alone (the operator
#    refuses the stack's own names before they get here).
# 4. Isolation, at the same passes: while ISOLATION_FILE holds a moment (whole
#    seconds since the epoch; the tenant is isolated), every session that came
#    over the network (clients, the replicas' WAL senders, the pooler's) and
#    began before it is closed. The NetworkPolicies refuse new connections,
#    but the dataplane lets connections already open go on; closed, they
#    cannot come back. A session begun after the moment is left alone: the
#    kubelet refreshes the file late, and a session that began after the
#    moment came after the isolation was lifted (the operator reports the lift
#    no sooner). "all" (or "true") closes every network session; empty or
#    "false": not isolated. Sessions over the socket or the loopback address (this
#    sidecar, the exporter) stay.
#
# Environment: POSTGRES_USER POSTGRES_PASSWORD APP_USER APP_PASSWORD
#   REPLICATION_USER REPLICATION_PASSWORD; PGHOST [/var/run/postgresql] (or @name,
#   an abstract socket);
#   READY_MARKER [/tmp/role-passwords-synced]; RETRY_SECONDS [5];
#   STARTING_RETRY_SECONDS [RETRY_SECONDS: how often to ask once the server's
#   socket is there, while it starts, replays and is promoted];
#   SLOTS_FILE [none: no slot is managed]; SLOT_PREFIX [postgres_replica_];
#   SLOT_SYNC_SECONDS [10]; SLOT_WAL_LIMIT_FILE [none: the server's setting stays];
#   ARCHIVE_TIMEOUT_FILE [none: the server's setting stays];
#   ADMIN_ACCOUNTS_FILE [none: no account is managed];
#   ISOLATION_FILE [none: sessions are never closed];
#   POSTGRES_DB (the database Admin accounts own through its owner)
set -u

: "${PGHOST:=/var/run/postgresql}"
: "${READY_MARKER:=/tmp/role-passwords-synced}"
: "${RETRY_SECONDS:=5}"
: "${STARTING_RETRY_SECONDS:=$RETRY_SECONDS}"
: "${SLOTS_FILE:=}"
: "${SLOT_PREFIX:=postgres_replica_}"
: "${SLOT_SYNC_SECONDS:=10}"
: "${ADMIN_ACCOUNTS_FILE:=}"
: "${SLOT_WAL_LIMIT_FILE:=}"
: "${ARCHIVE_TIMEOUT_FILE:=}"
: "${ISOLATION_FILE:=}"
export PGHOST
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${APP_USER:?APP_USER must be set}"
: "${APP_PASSWORD:?APP_PASSWORD must be set}"
: "${REPLICATION_USER:?REPLICATION_USER must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
# sync_passwords' psql reads them from its environment.
export POSTGRES_USER POSTGRES_PASSWORD APP_USER APP_PASSWORD REPLICATION_USER \
	REPLICATION_PASSWORD

# On TERM the pause's sleep goes too: nothing of the sidecar outlives it.
sleeper=
trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM INT
rm -f "$READY_MARKER"

# A sleep in the background and wait: TERM then ends the pod at once.
pause() {
	sleep "$1" &
	sleeper=$!
	wait "$sleeper"
}

# The superuser's sessions search the system catalog alone: in POSTGRES_DB the
# app's role owns the public schema, and a function it made there with a closer
# signature than a built-in one (public.format(text, text, text) against
# pg_catalog.format(text, VARIADIC "any")) was called in the built-in's stead,
# with the superuser's rights and the accounts' passwords as its arguments
# (CVE-2018-1058's pattern). Every object of ours is named with its schema.
as_superuser() {
	PGOPTIONS="-c search_path=pg_catalog${PGOPTIONS:+ $PGOPTIONS}" \
		psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc --tuples-only --no-align \
		--username=postgres --dbname=postgres "$@"
}

# as_superuser for a session that sends passwords (its SQL on stdin). By
# default the server logs a failed statement's text, and an error inside a DO
# block with its CONTEXT (the EXECUTEd statement): an ALTER ROLE refused while
# a restored server still recovers would put the password in the server's log,
# which is the pod's. A tenant's log_statement or log_min_duration_statement
# would log it even when it succeeds. And pg_stat_activity shows each session's
# statement to roles with pg_read_all_stats (an Operator admin account has it
# through pg_monitor): polled, it gave away the superuser's password at every
# start of the pod; track_activities off hides this session's statements there.
# These settings are the superuser's, for this session only; psql's terse
# verbosity keeps CONTEXT out of our own log.
as_superuser_with_secrets() {
	as_superuser --command='\set VERBOSITY terse' \
		--command="SET log_statement = 'none'; SET log_min_duration_statement = -1;
			SET log_min_error_statement = 'panic'; SET log_error_verbosity = 'terse';
			SET track_activities = off" \
		--file=- "$@"
}

# The passwords reach psql through its environment (\getenv), never its
# arguments: a process's command line is anyone's to read on the node (ps,
# monitoring agents).
sync_passwords() {
	as_superuser_with_secrets <<'SQL'
\getenv superuser POSTGRES_USER
\getenv superuser_password POSTGRES_PASSWORD
\getenv app_user APP_USER
\getenv app_password APP_PASSWORD
\getenv repl_user REPLICATION_USER
\getenv repl_password REPLICATION_PASSWORD
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

# A server setting from its file, when the server's differs: ALTER SYSTEM and a
# reload, never a restart. $1 the setting; $2 its file, in the unit pg_settings
# gives it (printed after values: $3); $4 what an empty file means: "keep" the
# server's setting, or "reset" it to its default. A value that is no number is
# refused by the server (and said in the log), never half-applied.
sync_setting() {
	setting=$1 setting_wanted=$(tr -d ' \t\r\n' <"$2") setting_unit=$3 setting_empty=$4
	[ -n "$setting_wanted" ] || [ "$setting_empty" = reset ] || return 0
	setting_found=$(as_superuser --field-separator=' ' --set=name="$setting" <<'SQL'
SELECT setting, boot_val FROM pg_settings WHERE name = :'name';
SQL
) || return 1
	setting_now=${setting_found% *} setting_default=${setting_found#* }
	if [ -z "$setting_wanted" ]; then
		[ "$setting_now" != "$setting_default" ] || return 0
		as_superuser --set=name="$setting" <<'SQL' || return 1
ALTER SYSTEM RESET :"name";
SELECT pg_reload_conf() \gset ignored_
SQL
		echo "$setting reset (was ${setting_now}${setting_unit})"
		return 0
	fi
	[ "$setting_now" != "$setting_wanted" ] || return 0
	as_superuser --set=name="$setting" --set=wanted="$setting_wanted" <<'SQL' || return 1
ALTER SYSTEM SET :"name" = :'wanted';
SELECT pg_reload_conf() \gset ignored_
SQL
	echo "$setting set to ${setting_wanted}${setting_unit} (was ${setting_now}${setting_unit})"
}

# The accounts as psql reads them from their file itself (not an argument,
# which ps shows); passwords stay inside the server's session (set_config),
# never in a statement's text that a log could show.
sync_admin_accounts() {
	as_superuser_with_secrets --dbname="$POSTGRES_DB" \
		--set=accounts_file="$ADMIN_ACCOUNTS_FILE" <<'SQL'
\set accounts `cat :'accounts_file'`
SELECT set_config('stackforge.admin_accounts', :'accounts', false) \gset ignored_
DO $do$
DECLARE
  account record;
  owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                  WHERE datname = current_database());
  grp oid;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stackforge_admin_accounts') THEN
    CREATE ROLE stackforge_admin_accounts NOLOGIN;
  END IF;
  grp := (SELECT oid FROM pg_roles WHERE rolname = 'stackforge_admin_accounts');
  FOR account IN
    SELECT * FROM json_to_recordset(current_setting('stackforge.admin_accounts')::json)
      AS a(name text, role text, password text)
  LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = account.name) THEN
      EXECUTE format('CREATE ROLE %I LOGIN IN ROLE stackforge_admin_accounts', account.name);
      RAISE NOTICE 'admin account % created', account.name;
    ELSIF NOT EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                       WHERE m.roleid = grp AND r.rolname = account.name) THEN
      RAISE WARNING 'role % exists and is not an admin account; left alone', account.name;
      CONTINUE;
    END IF;
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', account.name, account.password);
    EXECUTE format('REVOKE pg_read_all_data, pg_write_all_data, pg_monitor, %I FROM %I',
                   owner, account.name);
    CASE account.role
      WHEN 'Admin' THEN
        EXECUTE format('GRANT %I TO %I', owner, account.name);
      WHEN 'Operator' THEN
        EXECUTE format('GRANT pg_read_all_data, pg_write_all_data, pg_monitor TO %I',
                       account.name);
      ELSE
        EXECUTE format('GRANT pg_read_all_data TO %I', account.name);
    END CASE;
  END LOOP;
  -- Removed accounts: no login, and none of their role's rights (a session
  -- opened before kept them all; end_removed_sessions ends it once this has
  -- committed). Also those removed by an older sidecar, which kept the rights.
  FOR account IN
    SELECT r.rolname AS name, r.rolcanlogin AS could_log_in,
           (SELECT string_agg(quote_ident(g.rolname), ', ')
              FROM pg_auth_members held JOIN pg_roles g ON g.oid = held.roleid
             WHERE held.member = r.oid AND held.roleid <> grp) AS rights
      FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
     WHERE m.roleid = grp
       AND r.rolname NOT IN (SELECT a.name FROM json_to_recordset(
             current_setting('stackforge.admin_accounts')::json) AS a(name text))
  LOOP
    IF account.could_log_in THEN
      EXECUTE format('ALTER ROLE %I NOLOGIN', account.name);
      RAISE NOTICE 'admin account % removed: login and rights taken, sessions ended; '
        'what it owns kept', account.name;
    END IF;
    IF account.rights IS NOT NULL THEN
      EXECUTE format('REVOKE %s FROM %I', account.rights, account.name);
    END IF;
  END LOOP;
END
$do$;
SQL
}

# The sessions of removed admin accounts (NOLOGIN members of the accounts'
# group), ended at every pass: only once the removal has committed can a
# session not log in again right after, and one that slipped in between (or
# came over a replica's restart of the primary) is ended at the next pass.
end_removed_sessions() {
	# Chosen first, ended after (MATERIALIZED): in one WHERE clause the planner
	# may call pg_terminate_backend before the other conditions have excluded a
	# session, and end a current account's.
	as_superuser <<'SQL'
WITH removed AS MATERIALIZED (
  SELECT a.pid, a.usename
    FROM pg_stat_activity a
    JOIN pg_roles r ON r.rolname = a.usename
    JOIN pg_auth_members m ON m.member = r.oid
    JOIN pg_roles g ON g.oid = m.roleid AND g.rolname = 'stackforge_admin_accounts'
   WHERE NOT r.rolcanlogin)
SELECT 'admin account ' || usename || ': session ended (the account was removed)'
  FROM removed WHERE pg_terminate_backend(pid);
SQL
}

# Whether the server takes writes: its socket is there and it is not in
# recovery. Asked before each try so that a server still being restored (a
# drill's, a clone's or an in-place recovery's: hours for a large database)
# or still replaying WAL is waited for quietly. A try would fail, printing
# psql's error into the pod's log and the server's refusal into its own, five
# times a second at a drill's pace; each psql is CPU the restore could use.
# A server that is there but not yet taking connections (starting, replaying
# up to a consistent state, or a standby without hot standby) is waited for
# as quietly; any other error is printed.
server_takes_writes() {
	case $PGHOST in
	/*) [ -S "$PGHOST/.s.PGSQL.${PGPORT:-5432}" ] || return 1 ;;
	@*) abstract_socket_listed "$PGHOST/.s.PGSQL.${PGPORT:-5432}" || return 1 ;;
	esac
	server_started=yes
	if ! in_recovery=$(as_superuser --command='SELECT pg_is_in_recovery()' 2>&1); then
		case $in_recovery in
		*"accepting connections"* | *"is starting up"* | *"is shutting down"*) ;;
		*) printf '%s\n' "$in_recovery" >&2 ;;
		esac
		return 1
	fi
	[ "$in_recovery" = f ] || await_promotion
}

# A server in recovery that takes connections (a hot standby replaying up to
# its target) is watched in one session until it is promoted: psql's \watch
# asks again every STARTING_RETRY_SECONDS over the same connection. A replay
# may take hours, and a psql for each look would be a process and a login
# each time, twenty a second at a drill's pace. Between two looks the session
# is idle and holds no snapshot, so the replay never waits for it (a query
# held open, such as a DO block sleeping in a loop, would hold up the replay
# of every cleanup it conflicts with). Succeeds once the server says it is
# promoted; fails when the session ends first (the server stopped, or an
# error), and the caller asks again. In the background, as pause's sleep, so
# that TERM ends the sidecar at once.
await_promotion() {
	printf 'SELECT pg_is_in_recovery() \\watch %s\n' "$STARTING_RETRY_SECONDS" |
		as_superuser 2>/dev/null | promoted &
	sleeper=$!
	wait "$sleeper"
}

# Reads the watch's answers (one a line) until one says "not in recovery".
promoted() {
	while read -r answer; do
		[ "$answer" != f ] || return 0
	done
	return 1
}

# An abstract socket (PGHOST=@name: a drill's restored server, reached from
# another container of its pod) has no path to test; the network namespace's
# socket table lists it. Read with the shell's own read: no process per look.
abstract_socket_listed() {
	while read -r _ _ _ _ _ _ _ path; do
		[ "$path" != "$1" ] || return 0
	done </proc/net/unix
	return 1
}

# Until the socket is there (a restore: most of a drill) a try is a test of a
# path; after it, a try is a psql, and a server in hot standby is watched
# (await_promotion). A drill asks for both paces: its RTO waits for this loop
# to see the promotion.
server_started=
until server_takes_writes && sync_passwords; do
	if [ -n "$server_started" ]; then
		pause "$STARTING_RETRY_SECONDS"
	else
		pause "$RETRY_SECONDS"
	fi
done
touch "$READY_MARKER"
echo "role passwords match the credentials Secret"

# Sessions from the network that began before $1 (seconds since the epoch;
# empty: whenever they began), closed; prints how many.
close_network_sessions() {
	as_superuser --set=before="$1" <<'SQL'
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND backend_type IN ('client backend', 'walsender')
  AND client_addr IS NOT NULL
  AND NOT (client_addr << inet '127.0.0.0/8' OR client_addr = inet '::1')
  AND backend_start < coalesce(to_timestamp(nullif(:'before', '')::bigint), 'infinity')
SQL
}

# Closes what the isolation in ISOLATION_FILE asks for, if any.
enforce_isolation() {
	isolation=$(cat "$ISOLATION_FILE" 2>/dev/null)
	case $isolation in
	"" | false) return 0 ;;
	all | true) before= ;; # "true": as an operator before the moments wrote it
	*[!0-9]*)
		echo "$ISOLATION_FILE holds neither a moment nor \"all\": $isolation;" \
			"every network session is closed" >&2
		before=
		;;
	*) before=$isolation ;;
	esac
	if closed=$(close_network_sessions "$before"); then
		[ "$closed" = 0 ] || echo "isolated: closed $closed network sessions"
	else
		echo "could not close the network sessions of an isolated tenant; retrying" >&2
	fi
}

unused_before=
applied_accounts=
while :; do
	[ -z "$ISOLATION_FILE" ] || enforce_isolation
	if [ -n "$ADMIN_ACCOUNTS_FILE" ] && [ -r "$ADMIN_ACCOUNTS_FILE" ]; then
		# Applied again only when the file changes (the Secret volume is
		# refreshed by swapping a symlink; its content is what counts).
		current=$(cksum <"$ADMIN_ACCOUNTS_FILE")
		if [ "$current" != "$applied_accounts" ]; then
			report="${TMPDIR:-/tmp}/admin-accounts.out"
			if sync_admin_accounts >"$report" 2>&1; then
				applied_accounts=$current
			else
				echo "could not apply the admin accounts; retrying" >&2
			fi
			# Only psql's message lines: an error's CONTEXT lines would quote
			# the statement, and an ALTER ROLE statement holds a password.
			sed -n 's/^.*NOTICE: *//p; s/^.*WARNING: */warning: /p; s/^.*ERROR: */error: /p' \
				"$report"
			rm -f "$report"
		fi
		end_removed_sessions || echo "could not end the removed admin accounts' sessions; retrying" >&2
	fi
	if [ -n "$SLOT_WAL_LIMIT_FILE" ] && [ -r "$SLOT_WAL_LIMIT_FILE" ]; then
		sync_setting max_slot_wal_keep_size "$SLOT_WAL_LIMIT_FILE" MB keep ||
			echo "could not set max_slot_wal_keep_size; retrying" >&2
	fi
	if [ -n "$ARCHIVE_TIMEOUT_FILE" ] && [ -r "$ARCHIVE_TIMEOUT_FILE" ]; then
		sync_setting archive_timeout "$ARCHIVE_TIMEOUT_FILE" s reset ||
			echo "could not set archive_timeout; retrying" >&2
	fi
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
