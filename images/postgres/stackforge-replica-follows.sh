#!/bin/sh
# A read replica's liveness probe (installed as /usr/local/bin/stackforge-replica-follows).
#
# Fails only on proof that this copy can never follow the primary again, and
# then leaves RECLONE_MARKER (next to PGDATA, on the volume) for the replica's
# start (stackforge-clone-replica), which throws the copy away and clones
# anew. The proof is asked of the primary once the replica has stopped: not
# streaming, and the same replay position at STALL_CHECKS probes in a row
# (a replica still replaying its own WAL after a restart is left alone). Then:
#   - the primary is another cluster (its system identifier differs: its
#     volume was made anew);
#   - the primary invalidated this replica's slot (it fell further behind
#     than max_slot_wal_keep_size lets the primary keep);
#   - the slot keeps WAL only from a position past where this replica stopped
#     (the slot was dropped and made anew while the replica was away);
#   - the primary's timeline left this replica's before the position it
#     stopped at, or never passed through it (the primary was restored to a
#     moment, an in-place recovery: same system, a new timeline forked in the
#     past; its slots are made anew, so the slot check sees nothing);
#   - this copy is on a later timeline than the primary (it was promoted).
# This replica's timeline is the newest of its WAL segments' and its last
# restartpoint's: a replica that followed the primary onto a new timeline
# writes that timeline's segments at once, long before its next restartpoint.
# The timelines are compared only with a primary out of recovery: one still
# restoring reports its last restartpoint's, which may lag.
# Anything short of proof passes: this server or the primary not answering, a
# missing slot (the primary's upkeep sidecar creates it), a replica catching
# up. The reason goes to stderr and to TERMINATION_LOG, where the kubelet
# finds it and the operator reads it into the tenant's status.
#
# Environment: PGDATA; PRIMARY_HOST; PRIMARY_PORT [5432]; REPLICATION_USER;
#   REPLICATION_SLOT; PGPASSWORD (the replication role's, read by libpq);
#   PGHOST (this server's socket) [/var/run/postgresql];
#   RECLONE_MARKER [$PGDATA.reclone]; STALL_STATE [/tmp/replica-stall];
#   STALL_CHECKS [3]; TERMINATION_LOG [/dev/termination-log]
set -eu

: "${PGDATA:?PGDATA names the data directory}"
: "${PRIMARY_HOST:?PRIMARY_HOST names the primary}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_USER:?REPLICATION_USER names the replication role}"
: "${REPLICATION_SLOT:?REPLICATION_SLOT names the slot of this replica}"
: "${PGHOST:=/var/run/postgresql}"
PGDATA=${PGDATA%/}
: "${RECLONE_MARKER:=$PGDATA.reclone}"
: "${STALL_STATE:=/tmp/replica-stall}"
: "${STALL_CHECKS:=3}"
: "${TERMINATION_LOG:=/dev/termination-log}"

# Bounded, well inside the probe's timeout: a probe that times out counts as a
# failure, and this one must fail only on proof.
PGCONNECT_TIMEOUT=2
PGOPTIONS="-c statement_timeout=2s"
export PGCONNECT_TIMEOUT PGOPTIONS

sql() {
	psql --no-psqlrc --quiet --tuples-only --no-align --field-separator=' ' \
		--set=ON_ERROR_STOP=1 "$@"
}

# This server, by peer login over its socket; not answering means starting or
# recovering, which is not this probe's business.
here=$(sql --host="$PGHOST" --username=postgres --dbname=postgres --command="
	SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'stopped'),
	       coalesce(pg_last_wal_replay_lsn()::text, 'none'),
	       system_identifier,
	       greatest((SELECT timeline_id FROM pg_control_checkpoint()),
	                (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int)
	                   FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}\$'))
	FROM pg_control_system()") || exit 0
read -r receiver replayed system timeline <<EOF
$here
EOF
if [ "$receiver" = streaming ] || [ "$replayed" = none ]; then
	# Following again: a proof given before (the kubelet restarts the
	# container only after a second failure) no longer holds.
	rm -f "$STALL_STATE" "$RECLONE_MARKER"
	exit 0
fi

# How many probes in a row have seen the replica stopped at this position.
seen=0
if [ -r "$STALL_STATE" ]; then
	read -r position count <"$STALL_STATE" || true
	if [ "${position:-}" = "$replayed" ]; then
		seen=${count:-0}
	fi
fi
seen=$((seen + 1))
printf '%s %s\n' "$replayed" "$seen" >"$STALL_STATE"
if [ "$seen" -lt "$STALL_CHECKS" ]; then
	exit 0
fi

# The primary, as the replication role (the walreceiver's own login).
there=$(sql --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" \
	--username="$REPLICATION_USER" --no-password --dbname=postgres \
	--set=slot="$REPLICATION_SLOT" --set=replayed="$replayed" <<'SQL'
SELECT (SELECT system_identifier FROM pg_control_system()),
       coalesce(s.wal_status, 'missing'),
       coalesce(s.restart_lsn::text, 'none'),
       coalesce(s.restart_lsn > :'replayed'::pg_lsn, false),
       (SELECT timeline_id FROM pg_control_checkpoint()),
       pg_is_in_recovery()
FROM (SELECT 1) AS one
LEFT JOIN pg_replication_slots AS s ON s.slot_name = :'slot'
SQL
) || exit 0
read -r primary_system slot_status kept_from past_us primary_timeline primary_recovering <<EOF
$there
EOF

# Where the primary's history left this replica's timeline: "none" when it
# never passed through it, "" when that is not known (asked of a primary on
# this replica's timeline, or not answering). The history comes over a
# replication connection (TIMELINE_HISTORY), as the WAL receiver asks it.
left_our_timeline() {
	[ "$primary_recovering" = f ] && [ "$primary_timeline" -gt "$timeline" ] || return 0
	history=$(sql --command="TIMELINE_HISTORY $primary_timeline" --field-separator='|' \
		--dbname="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER replication=true") ||
		return 0
	# Lines "<parent timeline><tab><where it ended><tab><why>"; the first after
	# the file's name and the separator.
	switch=$(printf '%s\n' "$history" | sed '1s/^[^|]*|//' |
		awk -F'\t' -v tli="$timeline" '$1 == tli { print $2; exit }')
	echo "${switch:-none}"
}

if [ "$primary_system" != "$system" ]; then
	reason="the primary is another cluster (system $primary_system; this copy is of $system)"
elif [ "$primary_recovering" = f ] && [ "$timeline" -gt "$primary_timeline" ] 2>/dev/null; then
	reason="this copy is on timeline $timeline, past the primary's $primary_timeline (it was promoted)"
elif [ "$slot_status" = lost ]; then
	reason="the primary invalidated slot $REPLICATION_SLOT: this replica fell further behind than max_slot_wal_keep_size"
elif [ "$past_us" = t ]; then
	reason="slot $REPLICATION_SLOT keeps WAL from $kept_from only; this replica stopped at $replayed"
else
	switch=$(left_our_timeline)
	if [ "$switch" = none ]; then
		reason="the primary's timeline $primary_timeline does not descend from this copy's timeline $timeline"
	elif [ -n "$switch" ] && [ "$(sql --host="$PGHOST" --username=postgres --dbname=postgres \
		--set=replayed="$replayed" --set=switch="$switch" <<'SQL'
SELECT :'replayed'::pg_lsn > :'switch'::pg_lsn
SQL
	)" = t ]; then
		reason="the primary's timeline $primary_timeline left timeline $timeline at $switch, before this replica's $replayed (it was restored to a moment)"
	else
		exit 0
	fi
fi
printf '%s\n' "$reason" >"$RECLONE_MARKER"
printf 're-clone: %s\n' "$reason" >"$TERMINATION_LOG" 2>/dev/null || true
echo "cannot follow the primary, re-cloning: $reason" >&2
exit 1
