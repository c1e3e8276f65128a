#!/bin/sh
# The operator's roles, made once when the entrypoint initialises an empty
# data directory (it runs this inside its temporary, socket-only server and
# logs psql in as the superuser through PGHOST/PGUSER/PGPASSWORD):
#   APP_USER / APP_PASSWORD                  owns POSTGRES_DB, logs in with SCRAM
#   REPLICATION_USER / REPLICATION_PASSWORD  may stream WAL to the replicas
# Passwords only ever travel as psql variables, taken from psql's environment
# (\getenv; an argument is on the command line, which ps shows): :'var' quotes
# them, so no character of theirs can end a literal.
set -eu

if [ -z "${APP_USER:-}" ] || [ -z "${REPLICATION_USER:-}" ]; then
	echo "10-stackforge-roles: APP_USER or REPLICATION_USER unset, no roles made" >&2
	exit 0
fi
export APP_USER APP_PASSWORD REPLICATION_USER REPLICATION_PASSWORD

# No statement of this session is logged, failed or not, whatever the server's
# logging settings: its text holds the passwords (stackforge-primary-upkeep
# says more).
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --dbname="$POSTGRES_DB" \
	--command='\set VERBOSITY terse' \
	--command="SET log_statement = 'none'; SET log_min_duration_statement = -1;
		SET log_min_error_statement = 'panic'; SET log_error_verbosity = 'terse'" \
	--file=- --set=db="$POSTGRES_DB" <<'SQL'
\getenv app_user APP_USER
\getenv app_password APP_PASSWORD
\getenv repl_user REPLICATION_USER
\getenv repl_password REPLICATION_PASSWORD
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
ALTER DATABASE :"db" OWNER TO :"app_user";
CREATE ROLE :"repl_user" WITH REPLICATION LOGIN PASSWORD :'repl_password';
SQL
echo "10-stackforge-roles: made $APP_USER (owner of $POSTGRES_DB) and $REPLICATION_USER" >&2
