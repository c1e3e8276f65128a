#!/bin/sh
# Makes an empty PGDATA the database of a pgBackRest repository as it was at a
# moment (installed as /usr/local/bin/stackforge-restore): the base of a
# point-in-time drill, a clone, and an in-place recovery.
#
# pgBackRest restores the newest backup that ended before the target and
# writes the recovery settings; the server's next start replays archived WAL
# up to the target (every transaction committed at or before it, none after)
# and is promoted, on a timeline of its own. WAL comes from the source
# repository named here, whatever the server archives to afterwards: the
# restore_command names it outright.
#
# The restored directory is a new incarnation: the source's name
# (stackforge-incarnation, copied by the backup) is removed, so that the
# entrypoint names it anew and the restored database can never archive into
# the source's repository.
#
# The source's pgBackRest options (bucket, keys, cipher) come as
# STACKFORGE_RESTORE_PGBACKREST_<OPTION>, never as PGBACKREST_<OPTION>: a
# restored tenant's server has options of its own there (the repository it
# archives to, maybe another bucket with other keys). Every PGBACKREST_*
# variable is dropped and the source's take their place, for the restore and
# for each WAL segment the server fetches during its recovery: the
# restore_command is "stackforge-restore archive-get %f %p", which does the
# same in the server's environment (the container's).
#
# Usage: stackforge-restore                  restore PGDATA
#        stackforge-restore archive-get F P  fetch WAL segment F of the source to P
#
# Environment:
#   PGDATA                         the data directory to fill; must be empty or absent
#   STACKFORGE_RESTORE_REPOSITORY  the source's repository (repo1-path, an incarnation's)
#   STACKFORGE_RESTORE_STANZA      the source's stanza
#   STACKFORGE_RESTORE_TARGET      an RFC 3339 time (2026-11-30T22:15:05Z), or "latest":
#                                  the end of the archived WAL
#   STACKFORGE_RESTORE_PGBACKREST_* every other pgBackRest option of the source
#   STACKFORGE_RESTORE_CA_PEM      the source endpoint's CA bundle as text, for a pod
#                                  with no volume for it (a drill's): written to the
#                                  file its REPO1_STORAGE_CA_FILE option names
set -eu

die() {
	printf 'stackforge-restore: %s\n' "$*" >&2
	exit 1
}

: "${PGDATA:?PGDATA must be set}"
# A server still recovering a restore, in a pod that no longer carries it: its
# tenant was deleted and made again mid-recovery (the claim kept, the restore
# not asked again). The shell's own failure below (status 2) would read as the
# archive's end, and a restore of the latest would be promoted where its replay
# had got to and served as the clone. The recovery stops instead; a standby
# (see below) still takes it for "not there".
if [ "${1:-}" = archive-get ] && [ -z "${STACKFORGE_RESTORE_REPOSITORY:-}" ]; then
	[ ! -e "$PGDATA/standby.signal" ] || exit 1
	printf 'stackforge-restore: the restore'"'"'s settings are gone while the server recovers it (its tenant was made again mid-restore): the recovery stops here; delete this volume claim to restore anew\n' >&2
	exit 128
fi
: "${STACKFORGE_RESTORE_REPOSITORY:?STACKFORGE_RESTORE_REPOSITORY must be set}"
: "${STACKFORGE_RESTORE_STANZA:?STACKFORGE_RESTORE_STANZA must be set}"
: "${STACKFORGE_RESTORE_TARGET:?STACKFORGE_RESTORE_TARGET must be set}"

case $STACKFORGE_RESTORE_REPOSITORY in
/*) ;;
*) die "STACKFORGE_RESTORE_REPOSITORY must be an absolute repository path: '$STACKFORGE_RESTORE_REPOSITORY'" ;;
esac
case $STACKFORGE_RESTORE_REPOSITORY$STACKFORGE_RESTORE_STANZA$PGDATA in
*[!0-9A-Za-z/._-]*) die "the repository path, stanza and PGDATA may hold letters, digits, '/', '.', '_' and '-' only" ;;
esac

# The source's options in place of whatever PGBACKREST_* this process has.
# Names are only ever [A-Z0-9_] (sed's pattern), so eval sees no value.
use_source_options() {
	for name in $(env | sed -n 's/^\(PGBACKREST_[A-Z0-9_]*\)=.*/\1/p'); do
		unset "$name"
	done
	for name in $(env | sed -n 's/^STACKFORGE_RESTORE_\(PGBACKREST_[A-Z0-9_]*\)=.*/\1/p'); do
		eval "$name=\$STACKFORGE_RESTORE_$name"
		export "${name?}"
	done
	if [ -n "${STACKFORGE_RESTORE_CA_PEM:-}" ]; then
		write_ca "${PGBACKREST_REPO1_STORAGE_CA_FILE:?STACKFORGE_RESTORE_CA_PEM needs STACKFORGE_RESTORE_PGBACKREST_REPO1_STORAGE_CA_FILE}"
	fi
}

# The CA as a file, written once per container (each WAL segment's archive-get
# finds it there) and whole: renamed into place.
write_ca() {
	[ ! -s "$1" ] || return 0
	mkdir -p "$(dirname "$1")"
	printf '%s\n' "$STACKFORGE_RESTORE_CA_PEM" >"$1.new"
	mv "$1.new" "$1"
}

source="--repo1-path=$STACKFORGE_RESTORE_REPOSITORY --stanza=$STACKFORGE_RESTORE_STANZA"

# PostgreSQL takes any failure of the restore_command for the end of the
# archive, unless its exit status is above 125: an archive recovery then ends
# where the bucket failed to answer, and a restore of the latest is promoted
# short of the archive's end without a word. pgBackRest says 1 when the file
# is not in the archive and another status when it could not look: that one
# stops the recovery instead (the server exits and starts again from where it
# was, as its container is restarted). A standby (a replica cloned from a
# restored primary inherits the restore_command) keeps taking any failure for
# "not there": it goes on streaming.
if [ "${1:-}" = archive-get ]; then
	[ $# -eq 3 ] || die "usage: stackforge-restore archive-get <segment> <path>"
	use_source_options
	status=0
	# $source is two words on purpose; its characters were checked above.
	# shellcheck disable=SC2086
	pgbackrest $source --pg1-path="$PGDATA" archive-get "$2" "$3" || status=$?
	if [ "$status" -le 1 ] || [ -e "$PGDATA/standby.signal" ]; then
		exit "$status"
	fi
	printf 'stackforge-restore: could not fetch %s from the archive (pgBackRest exit status %s): the recovery stops here rather than end short of the archive\n' "$2" "$status" >&2
	exit 128
fi
[ $# -eq 0 ] || die "usage: stackforge-restore [archive-get <segment> <path>]"

target=$STACKFORGE_RESTORE_TARGET
case $target in
latest)
	# No target: recovery replays every archived segment, then promotes.
	set -- --type=default
	;;
[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]*)
	case $target in
	*[!0-9TZ:.+-]*) die "STACKFORGE_RESTORE_TARGET is not an RFC 3339 time: '$target'" ;;
	*Z | *[+-][0-9][0-9]:[0-9][0-9]) ;;
	*) die "STACKFORGE_RESTORE_TARGET needs a zone (Z or +hh:mm): '$target'" ;;
	esac
	# pgBackRest (which picks the backup by it) and the server both read
	# "YYYY-MM-DD HH:MM:SS[.fraction]+hh[:mm]".
	moment=$(printf '%s' "$target" | sed -e 's/T/ /' -e 's/Z$/+00/')
	set -- --type=time "--target=$moment" --target-action=promote
	;;
*) die "STACKFORGE_RESTORE_TARGET is neither 'latest' nor an RFC 3339 time: '$target'" ;;
esac

if [ -e "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
	die "PGDATA=$PGDATA is not empty: a restore never writes over a database"
fi

use_source_options
# Restored next to its place and moved there only once complete: a restore
# interrupted half-way leaves nothing a restart would take for a database.
partial="$PGDATA.restore"
rm -rf "$partial"
echo "stackforge-restore: restoring $STACKFORGE_RESTORE_REPOSITORY (stanza $STACKFORGE_RESTORE_STANZA) to $target"
# $source is two words on purpose; its characters were checked above. The
# restore_command runs this program again (see the top), which names the
# final PGDATA: pgBackRest checks it against the server's working directory.
# shellcheck disable=SC2086
pgbackrest $source --pg1-path="$partial" restore "$@" \
	--recovery-option="restore_command=stackforge-restore archive-get %f \"%p\""
rm -f "$partial/stackforge-incarnation"
chmod 0700 "$partial"
if [ -d "$PGDATA" ]; then
	rmdir "$PGDATA"
fi
mv "$partial" "$PGDATA"
echo "stackforge-restore: restored; the server's next start recovers to $target"
