"""pgBackRest, the tool of the physical backups, against the tests' S3 server.

pgBackRest speaks S3 over HTTPS only, checks the server's name against DNS
names in its certificate (not IP addresses), and, on OpenSSL 3, fails a request
whose TLS session ends without a close_notify, which moto's own server does
after every response (devcluster/s3app.py). This proves the S3 server the
tests and ``dev`` run is one pgBackRest works with: a repository is created,
PostgreSQL's archive_command pushes a WAL segment into it, encrypted, and
``info`` reads it back. (A loopback PostgreSQL: what is under test is the S3
server and the tool, not a pod.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackforge_operator.backup.store import StoreConfig
from stackforge_operator.drill.checks import QueryCheckSpec
from stackforge_operator.drill.outcome import DrillOutcome
from stackforge_operator.drill.runner import DrillRequest, PhysicalRecovery, run_drill
from stackforge_operator.drill.selection import parse_time
from stackforge_operator.models.backup import PhysicalBackup, PhysicalBackupType
from stackforge_operator.reconcile import physical_backups
from tests.images.postgres_pods import (
    PG15_BIN,
    Pod,
    Server,
    chown_tree,
    program,
    query,
    start,
)
from tests.support import tenants
from tests.support.pgbackrest_repo import (
    REPOSITORY_PATH,
    STANZA,
    Archiving,
    archiving_server,
    pgbackrest,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture
def archiving() -> Iterator[Archiving]:
    try:
        with archiving_server() as found:
            yield found
    except RuntimeError as error:
        if "not found" in str(error):
            pytest.fail(str(error))
        raise


def test_archive_command_pushes_wal_into_an_encrypted_repository_over_tls(
        archiving: Archiving) -> None:
    created = pgbackrest(archiving, "stanza-create")
    assert created.returncode == 0, created.stdout + created.stderr
    # `check` switches to a new WAL segment and waits until archive_command has
    # put it into the repository.
    checked = _checked(archiving)
    assert "successfully archived" in checked.stdout

    shown = pgbackrest(archiving, "info", "--output=json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    [stanza] = json.loads(shown.stdout)
    # WAL but no backup yet: the repository is sound, with nothing to restore from.
    assert stanza["status"]["message"] == "no valid backups"
    assert stanza["cipher"] == "aes-256-cbc"
    [archive] = stanza["archive"]
    assert archive["min"] and archive["max"] >= archive["min"]

    objects = archiving.s3.client().list_objects_v2(Bucket=archiving.bucket)["Contents"]
    keys = [o["Key"] for o in objects]
    prefix = REPOSITORY_PATH.lstrip("/") + "/"
    assert keys and all(k.startswith(prefix) for k in keys), keys
    segments = [k for k in keys if k.startswith(f"{prefix}archive/{STANZA}/") and
                k.endswith(".zst")]
    assert segments, keys
    # Encrypted at rest by pgBackRest itself: not even the compression's magic shows.
    body = archiving.s3.client().get_object(Bucket=archiving.bucket, Key=segments[0])["Body"]
    assert not body.read().startswith(ZSTD_MAGIC)

    # The keys stay out of what the commands print (pgBackRest redacts them).
    printed = created.stdout + created.stderr + checked.stdout + checked.stderr
    for secret in (archiving.cipher_pass, archiving.s3.credentials.secret_access_key):
        assert secret not in printed


def _checked(archiving: Archiving) -> subprocess.CompletedProcess[str]:
    """pgBackRest's `check`: it switches WAL and waits until that segment is archived."""
    checked = pgbackrest(archiving, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked


def _backup(archiving: Archiving, kind: str) -> None:
    # The options the archiver passes (images/postgres/stackforge-archiver.sh).
    ran = pgbackrest(archiving, "backup", f"--type={kind}", "--start-fast",
                      "--repo1-retention-full-type=count", "--repo1-retention-full=1")
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_the_operator_reads_complete_backups_and_their_expiry_from_the_repository(
        archiving: Archiving) -> None:
    """What reconcile/physical_backups.py reads of a repository pgBackRest really
    wrote: the labels of complete backups, their types and times, without the
    cipher's passphrase; an interrupted backup is none; expiry removes them."""
    created = pgbackrest(archiving, "stanza-create")
    assert created.returncode == 0, created.stdout + created.stderr
    client, bucket = archiving.s3.client(), archiving.bucket

    def read() -> list[PhysicalBackup]:
        return physical_backups.read(client, bucket, REPOSITORY_PATH, STANZA, [])

    def labels_in_info() -> list[str]:
        shown = pgbackrest(archiving, "info", "--output=json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        [stanza] = json.loads(shown.stdout)
        return [b["label"] for b in stanza["backup"]]

    assert read() == []
    before_full = datetime.now(UTC)
    _backup(archiving, "full")
    _backup(archiving, "incr")
    first = read()
    assert [b.label for b in first] == labels_in_info()
    assert [b.type for b in first] == [PhysicalBackupType.FULL, PhysicalBackupType.INCREMENTAL]
    full, incremental = first
    assert incremental.label.startswith(f"{full.label}_")
    for backup in first:
        assert backup.start_time is not None
        # The label's time is the archiver's clock, to the second.
        assert before_full - timedelta(seconds=1) <= backup.start_time <= backup.stop_time
    # A backup that was interrupted (files, no manifest) is no backup.
    interrupted = f"{physical_backups.backup_prefix(REPOSITORY_PATH, STANZA)}20990101-000000F/"
    client.put_object(Bucket=bucket, Key=f"{interrupted}pg_data/PG_VERSION.zst", Body=b"x")
    assert read() == first
    client.delete_object(Bucket=bucket, Key=f"{interrupted}pg_data/PG_VERSION.zst")

    # Retention 1 (by count): the next full backup's expiry removes the first
    # one with the incremental that depends on it.
    _backup(archiving, "full")
    [newer] = read()
    assert newer.type == PhysicalBackupType.FULL and newer.label > full.label
    assert labels_in_info() == [newer.label]


RESTORE = program("postgres/stackforge-restore.sh")


def _source_options(archiving: Archiving, pod: Pod) -> dict[str, str]:
    """The source's options as stackforge-restore takes them, beside options of the
    restored server's own that name another repository (a restored tenant's, where
    it archives to): the restore and every WAL fetch must use the source's only.

    Locks and spool in the pod's own directory, as in a pod: the source's
    server runs on this host too, and an asynchronous archive-get holding its
    lock would leave the source's archive-push waiting.
    """
    state = pod.root / "pgbackrest"
    state.mkdir(exist_ok=True)
    chown_tree(state, pod.user)
    return {"STACKFORGE_RESTORE_PGBACKREST_CONFIG": str(archiving.config),
            "STACKFORGE_RESTORE_PGBACKREST_LOCK_PATH": str(state / "lock"),
            "STACKFORGE_RESTORE_PGBACKREST_SPOOL_PATH": str(state / "spool"),
            "PGBACKREST_CONFIG": "/nonexistent/pgbackrest.conf",
            "PGBACKREST_REPO1_PATH": "/somewhere/else", "PGBACKREST_STANZA": "other"}


def _restore(archiving: Archiving, pod: Pod, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(RESTORE)], capture_output=True, text=True, timeout=180, check=False,
        env={"PATH": os.environ["PATH"], "PGDATA": str(pod.pgdata),
             **_source_options(archiving, pod),
             "STACKFORGE_RESTORE_REPOSITORY": REPOSITORY_PATH,
             "STACKFORGE_RESTORE_STANZA": STANZA, "STACKFORGE_RESTORE_TARGET": target},
        **archiving.server.os_user.popen_kwargs())


def test_a_restore_to_a_moment_has_every_commit_before_it_and_none_after(
        archiving: Archiving, pod: Pod, servers: list[Server]) -> None:
    """The image's entrypoint and stackforge-restore on a repository pgBackRest
    wrote: rows committed before T are there, later ones are not, a table
    dropped after T is there; the restored database is promoted and named as an
    incarnation of its own."""
    server = archiving.server
    created = pgbackrest(archiving, "stanza-create")
    assert created.returncode == 0, created.stdout + created.stderr
    # The source's incarnation name goes into the backup with PGDATA.
    incarnation = server.data_dir / "stackforge-incarnation"
    incarnation.write_text("7400000000000000001-20261130T000000Z\n")
    os.chown(incarnation, server.os_user.uid, server.os_user.gid)
    server.psql("CREATE TABLE kept (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());"
                "CREATE TABLE dropped (id int);"
                "INSERT INTO kept (id) SELECT generate_series(1, 100);"
                "INSERT INTO dropped VALUES (1);")
    _backup(archiving, "full")
    server.psql("INSERT INTO kept (id) SELECT generate_series(101, 200);")
    time.sleep(1.1)
    target = server.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                         "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").strip()
    time.sleep(1.1)
    server.psql("INSERT INTO kept (id) SELECT generate_series(201, 300);")
    server.psql("DROP TABLE dropped;")
    # `check` switches WAL and waits until the segment with the drop is archived.
    _checked(archiving)

    # Never over a database.
    pod.pgdata.mkdir()
    (pod.pgdata / "PG_VERSION").write_text("15\n")
    chown_tree(pod.data_dir, pod.user)
    refused = _restore(archiving, pod, target)
    assert refused.returncode != 0 and "is not empty" in refused.stderr, refused.stderr
    shutil.rmtree(pod.pgdata)

    # The pod's way: the entrypoint, with a restore target and an empty
    # volume, restores instead of initialising, then starts the server,
    # which replays the archive to the target and is promoted.
    bin_dir = pod.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "stackforge-restore").symlink_to(RESTORE)
    # The endpoint's CA as text, as a drill's pod (which has no volume for
    # it) gets it: written where the option names, before the restore and
    # every WAL fetch read it. Its path overrides the configuration's.
    ca_file = pod.root / "tmp" / "stackforge" / "restore-ca.crt"
    assert archiving.s3.ca_bundle is not None  # archiving_server serves over TLS
    ca_text = Path(archiving.s3.ca_bundle).read_text().strip()
    restored = start(pod, servers, PATH=f"{bin_dir}:{PG15_BIN}:/usr/bin:/bin",
                     **_source_options(archiving, pod),
                     STACKFORGE_RESTORE_PGBACKREST_REPO1_STORAGE_CA_FILE=str(ca_file),
                     STACKFORGE_RESTORE_CA_PEM=ca_text,
                     STACKFORGE_RESTORE_REPOSITORY=REPOSITORY_PATH,
                     STACKFORGE_RESTORE_STANZA=STANZA, STACKFORGE_RESTORE_TARGET=target)
    restored.wait_ready()
    assert ca_file.read_text().strip() == ca_text

    def sql(text: str) -> str:
        return query(pod, text, user="postgres", password=server.password,
                     database="postgres")

    tenants.eventually(lambda: sql("SELECT pg_is_in_recovery()") == "f", timeout=60,
                       interval=0.5)
    assert "restoring" in restored.log and "initialising" not in restored.log
    assert sql("SELECT min(id) || '|' || max(id) || '|' || count(*) FROM kept") == (
        "1|200|200"), restored.log
    assert sql("SELECT count(*) FROM dropped") == "1"
    newest = float(sql("SELECT extract(epoch FROM max(at)) FROM kept"))
    assert newest <= datetime.fromisoformat(target).timestamp()
    # A timeline of its own, and an incarnation of its own: it can never
    # be taken for the source, nor archive into the source's repository.
    assert sql("SELECT timeline_id FROM pg_control_checkpoint()") != "1"
    named = (pod.pgdata / "stackforge-incarnation").read_text().strip()
    assert named != "7400000000000000001-20261130T000000Z"
    system_id = sql("SELECT system_identifier FROM pg_control_system()")
    assert named.startswith(f"{system_id}-"), (named, system_id)
    assert not Path(f"{pod.pgdata}.restore").exists()

    # The drill runner's Physical checks on it: promoted, nothing after the
    # target; RPO is the target less the last replayed commit (the inserts
    # 1.1 s before it). Against a target before that commit, they fail.
    def drill(moment: datetime) -> DrillOutcome:
        kept = QueryCheckSpec(name="kept", sql="SELECT count(*) FROM kept",
                              expected_value="200")
        dropped = QueryCheckSpec(name="dropped", sql="SELECT count(*) FROM dropped",
                                 expected_value="1")
        return run_drill(
            DrillRequest(tenant="restored", store=StoreConfig(bucket=archiving.bucket),
                         recovery=PhysicalRecovery(REPOSITORY_PATH, moment),
                         queries=(kept, dropped), pg_bin_dir=PG15_BIN),
            env={"PGHOST": "127.0.0.1", "PGPORT": str(pod.port), "PGUSER": "postgres",
                 "PGPASSWORD": server.password, "PGDATABASE": "postgres",
                 "PATH": "/usr/bin:/bin"},
            client=archiving.s3.client())

    moment = parse_time(target)
    outcome = drill(moment)
    line = json.loads(outcome.to_json_line())
    assert outcome.passed, line
    assert [c.name for c in outcome.checks] == ["connectivity", "recovery", "kept", "dropped"]
    assert outcome.recovery_point is not None
    assert moment - timedelta(seconds=3) < outcome.recovery_point <= moment
    assert line["rpoSeconds"] == math.ceil((moment - outcome.recovery_point).total_seconds())
    assert line["recoveryTarget"] == moment.isoformat()
    assert line["backupLocation"] == f"s3://{archiving.bucket}{REPOSITORY_PATH}"
    report = json.loads(archiving.s3.client().get_object(
        Bucket=archiving.bucket, Key="stackforge/restored/drills/"
        f"{outcome.run_id}.json")["Body"].read())
    assert report["backup"]["method"] == "Physical", report
    assert report["rpo"]["measuredTo"] == "backup.recoveryTarget"

    early = drill(outcome.recovery_point - timedelta(seconds=1))
    assert not early.passed and early.grade.reason == "CheckFailed"
    [recovery] = [c for c in early.checks if c.name == "recovery"]
    assert not recovery.passed and "after the target" in (recovery.message or "")


def test_a_restore_of_the_latest_stops_where_the_archive_cannot_be_read_never_short(
        archiving: Archiving, pod: Pod, servers: list[Server]) -> None:
    """PostgreSQL takes a failing restore_command for the archive's end: a restore
    of the latest whose WAL fetch failed (the bucket away for a moment) was
    promoted without the rows after the backup, and said nothing. Now the
    server stops there and, started again with the bucket back, replays it all."""
    server = archiving.server
    created = pgbackrest(archiving, "stanza-create")
    assert created.returncode == 0, created.stdout + created.stderr
    server.psql("CREATE TABLE kept (id int PRIMARY KEY);"
                "INSERT INTO kept SELECT generate_series(1, 100);")
    _backup(archiving, "full")
    # Rows in segments after the backup's: those a failing fetch would cut off.
    server.psql("SELECT pg_switch_wal();")
    first_after = server.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn());").strip()
    server.psql("INSERT INTO kept SELECT generate_series(101, 300);")
    _checked(archiving)

    bin_dir = pod.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "stackforge-restore").symlink_to(RESTORE)
    # The bucket away: pgBackRest fails to fetch the segments after the
    # backup's with its connection error's status, as it does.
    outage = pod.root / "outage"
    shim = bin_dir / "pgbackrest"
    shim.write_text(f"""#!/bin/sh
wanted=
for arg; do
    [ "$previous" = archive-get ] && wanted=$arg  # archive-get <file> <path>
    previous=$arg
done
case $wanted in
*.*) ;;  # a timeline's history: not a segment
?*) if [ -e {outage} ] && expr "x$wanted" \\>= "x{first_after}" >/dev/null; then
        echo "ERROR: [039]: could not connect to the bucket" >&2
        exit 39
    fi ;;
esac
exec /usr/bin/pgbackrest "$@"
""")
    shim.chmod(0o755)
    outage.touch()
    env = dict(PATH=f"{bin_dir}:{PG15_BIN}:/usr/bin:/bin", **_source_options(archiving, pod),
               STACKFORGE_RESTORE_REPOSITORY=REPOSITORY_PATH,
               STACKFORGE_RESTORE_STANZA=STANZA, STACKFORGE_RESTORE_TARGET="latest")
    stopped = start(pod, servers, **env)
    assert stopped.process.wait(timeout=120) != 0, stopped.log
    assert f"could not fetch {first_after} from the archive" in stopped.log, stopped.log
    assert (pod.pgdata / "recovery.signal").exists(), stopped.log  # never promoted

    # Its tenant made again mid-recovery: the pod carries none of the restore's
    # settings. The shell's failure read as the archive's end, and the server
    # was promoted with 100 rows of 300, served as the clone.
    orphaned = start(pod, servers, PATH=env["PATH"])
    assert orphaned.process.wait(timeout=120) != 0, orphaned.log
    assert "the restore's settings are gone while the server recovers it" in orphaned.log
    assert (pod.pgdata / "recovery.signal").exists(), orphaned.log  # never promoted

    outage.unlink()
    restored = start(pod, servers, **env)
    restored.wait_ready()

    def sql(text: str) -> str:
        return query(pod, text, user="postgres", password=server.password,
                     database="postgres")

    tenants.eventually(lambda: sql("SELECT pg_is_in_recovery()") == "f", timeout=60,
                       interval=0.5)
    assert sql("SELECT count(*) FROM kept") == "300", restored.log


@pytest.mark.parametrize(("target", "refusal"), [
    ("yesterday", "neither 'latest' nor an RFC 3339 time"),
    ("2026-11-30T22:15:05", "needs a zone"),
    ("2026-11-30T22:15:05Z'; DROP", "is not an RFC 3339 time"),
])
def test_the_restore_refuses_a_target_that_is_no_moment(tmp_path: Path, target: str,
                                                         refusal: str) -> None:
    ran = subprocess.run(
        [str(RESTORE)], capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": os.environ["PATH"], "PGDATA": str(tmp_path / "data"),
             "STACKFORGE_RESTORE_REPOSITORY": REPOSITORY_PATH,
             "STACKFORGE_RESTORE_STANZA": STANZA, "STACKFORGE_RESTORE_TARGET": target})
    assert ran.returncode == 1 and refusal in ran.stderr, ran.stderr
    assert not (tmp_path / "data").exists()
