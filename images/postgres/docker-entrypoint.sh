#!/bin/sh
# Entrypoint of the stackforge/postgres image.
#
# With an empty data directory it initialises a cluster the way the operator's
# StatefulSet expects (and the way the community image does, so the same
# environment works): superuser POSTGRES_USER with password POSTGRES_PASSWORD,
# database POSTGRES_DB, then every script in the init directory, run against a
# temporary server that only listens on a Unix socket. Then, initialised or
# not, it execs the command it was given ("postgres ..." by default).
#
# Environment (defaults in brackets):
#   POSTGRES_PASSWORD    the superuser's password; required to initialise
#   POSTGRES_USER        the superuser's name [postgres]
#   POSTGRES_DB          a database created at initialisation [POSTGRES_USER]
#   POSTGRES_INITDB_ARGS extra initdb arguments, split on blanks []
#   PGDATA               the data directory [/var/lib/postgresql/data/pgdata]
#   POSTGRES_SOCKET_DIR  the temporary server's socket directory [/var/run/postgresql]
#   POSTGRES_INITDB_DIR  the init scripts' directory [/docker-entrypoint-initdb.d]
#   STACKFORGE_RESTORE_TARGET  when set, an empty data directory is restored from a
#                        pgBackRest repository to this moment instead of initialised
#                        (stackforge-restore, and its STACKFORGE_RESTORE_* settings)
#
# It also names the data directory's incarnation, once: PGDATA/stackforge-incarnation
# holds "<system identifier>-<UTC time>", the last part of the path its WAL is
# archived under (stackforge-pgbackrest). A replica's clone copies its primary's
# file, so a promoted replica archives where its primary did; a restore writes
# a new one, so a restored database never archives into its source's path.
#
# Everything it writes goes to PGDATA, the socket directory and TMPDIR, so the
# root filesystem may be read-only.
set -eu

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_INITDB_ARGS:=}"
: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
PGDATA=${PGDATA%/}
: "${POSTGRES_SOCKET_DIR:=/var/run/postgresql}"
: "${POSTGRES_INITDB_DIR:=/docker-entrypoint-initdb.d}"
export PGDATA

name_incarnation() {
	file="$PGDATA/stackforge-incarnation"
	[ ! -s "$file" ] || return 0
	system_id=$(pg_controldata "$PGDATA" | sed -n 's/^Database system identifier: *//p')
	[ -n "$system_id" ] || die "cannot read the system identifier of PGDATA=$PGDATA"
	printf '%s-%s\n' "$system_id" "$(date -u +%Y%m%dT%H%M%SZ)" >"$file.new"
	mv "$file.new" "$file"
	log "incarnation $(cat "$file")"
}

log() {
	printf '%s: %s\n' "entrypoint" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

# The container's first process until it execs the server: a signal without a
# handler is ignored there, so a pod deleted while it initialised or restored
# its database waited out its whole grace period, then was killed. Those steps
# run in the background (in_background) because a shell takes a trap only
# between commands; what they leave half-made is cleared by the next start.
child=
stop() {
	[ -z "$child" ] || kill "$child" 2>/dev/null || true
	exit 143
}

in_background() {
	"$@" &
	child=$!
	status=0
	wait "$child" || status=$?
	child=
	return "$status"
}

# "postgres --version" and friends must not initialise anything.
wants_help() {
	for arg in "$@"; do
		case "$arg" in
		-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

run_initdb() {
	# The password reaches initdb through a private file, never an argument
	# (visible in the process list).
	printf '%s\n' "$POSTGRES_PASSWORD" >"$workdir/pwfile"
	# Superuser over the socket by peer (the operator's own pg_hba does the
	# same); everything over the network with a SCRAM password.
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words on purpose
	initdb --username="$POSTGRES_USER" --pwfile="$workdir/pwfile" \
		--auth-local=peer --auth-host=scram-sha-256 \
		$POSTGRES_INITDB_ARGS
	rm -f "$workdir/pwfile"
	# Without the operator's hba_file the server is reachable with a password
	# from any address, as in the community image.
	printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
}

start_temporary_server() {
	# Only a Unix socket, and only password logins on it: nothing reaches the
	# cluster over the network before it is fully initialised, and the init
	# scripts work whatever POSTGRES_USER is called.
	printf 'local all all scram-sha-256\n' >"$workdir/pg_hba.conf"
	# pg_ctl hands the options to a shell: the quotes keep paths whole.
	pg_ctl --wait --silent --options="-c listen_addresses='' \
-c 'unix_socket_directories=$POSTGRES_SOCKET_DIR' -c 'hba_file=$workdir/pg_hba.conf'" start
}

stop_temporary_server() {
	pg_ctl --wait --silent --mode=fast stop
}

psql_init() {
	psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet "$@"
}

create_database() {
	if [ "$POSTGRES_DB" = postgres ]; then
		return
	fi
	log "creating database $POSTGRES_DB"
	# psql's :"var" quoting keeps any name harmless.
	psql_init --dbname=postgres --set=db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
}

run_init_scripts() {
	[ -d "$POSTGRES_INITDB_DIR" ] || return 0
	for f in "$POSTGRES_INITDB_DIR"/*; do
		[ -e "$f" ] || continue
		case "$f" in
		*.sh)
			# As the community image does: an executable script runs on its
			# own, any other is sourced into this shell.
			if [ -x "$f" ]; then
				log "running $f"
				"$f"
			else
				log "sourcing $f"
				# shellcheck disable=SC1090 # the scripts are the user's
				. "$f"
			fi
			;;
		*.sql)
			log "running $f"
			psql_init --dbname="$POSTGRES_DB" --file="$f"
			;;
		*) log "ignoring $f" ;;
		esac
	done
}

cleanup() {
	if [ -n "$server_running" ]; then
		pg_ctl --silent --mode=immediate stop >/dev/null 2>&1 || true
	fi
	rm -rf "$workdir"
}

initialise() {
	[ -n "${POSTGRES_PASSWORD:-}" ] || die "POSTGRES_PASSWORD must be set to initialise $PGDATA"
	target=$PGDATA
	if [ -d "$target" ] && [ -n "$(ls -A "$target")" ]; then
		die "PGDATA=$target is neither empty nor a PostgreSQL data directory"
	fi
	# The cluster is made next to its final place and moved there only once
	# complete: a start interrupted half-way leaves no directory that a
	# restart would take for an initialised one and skip.
	export PGDATA="$target.init"
	rm -rf "$PGDATA"
	mkdir -p "$(dirname "$target")" ||
		die "cannot create $(dirname "$target") (is the volume writable by uid $(id -u)?)"
	server_running=
	workdir=$(mktemp -d)
	trap cleanup EXIT
	log "initialising $target"
	run_initdb
	# Set first: a start that fails half-way may still leave a server behind.
	server_running=1
	start_temporary_server
	# The init scripts' psql finds the temporary server and logs in as the
	# superuser through these; they stay inside this subshell.
	export PGHOST="$POSTGRES_SOCKET_DIR" PGUSER="$POSTGRES_USER" PGPASSWORD="$POSTGRES_PASSWORD"
	export PGDATABASE="$POSTGRES_DB"
	create_database
	run_init_scripts
	stop_temporary_server
	server_running=
	if [ -d "$target" ]; then
		rmdir "$target"
	fi
	mv "$PGDATA" "$target"
	log "initialisation complete"
}

# "docker run image -c key=value" means the server with extra settings.
case "${1:-}" in
-*) set -- postgres "$@" ;;
esac

if [ "${1:-}" = postgres ] && ! wants_help "$@"; then
	trap stop INT TERM
	[ "$(id -u)" != 0 ] || die "PostgreSQL does not run as root; run as uid 999 (the image's user)"
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		if [ -n "${STACKFORGE_RESTORE_TARGET:-}" ]; then
			# A database from a backup instead of a new one; the server below
			# replays WAL to the target and is promoted (stackforge-restore).
			log "restoring $PGDATA from a backup"
			in_background stackforge-restore || die "the restore of $PGDATA failed"
		elif [ -e "$PGDATA.restore" ]; then
			# A restore (stackforge-restore) was under way here, and this pod is
			# not asked to finish it: its tenant was deleted and made again. A new,
			# empty database here would be served as the restored one.
			die "an unfinished restore is on this volume ($PGDATA.restore) and none is asked for: delete this volume claim to begin again (the tenant restores anew), or delete $PGDATA.restore to initialise an empty database"
		else
			# A subshell (run in the background, as a function is): its exports,
			# trap and temporary files end with it, so the server below starts
			# with the environment it was given.
			in_background initialise
		fi
	fi
	# Also repairs a directory that a recursive fsGroup chown made
	# group-writable, which PostgreSQL refuses to start with.
	chmod 0700 "$PGDATA" || die "cannot set the mode of PGDATA=$PGDATA (is it owned by uid $(id -u)?)"
	name_incarnation
fi

exec "$@"
