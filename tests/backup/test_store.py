"""The S3 store and retention against the real S3 server: uploads, listing, deletion, sweeping."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from stackforge_operator.backup import store as store_module
from stackforge_operator.backup.housekeeping import apply_retention
from stackforge_operator.backup.manifest import Manifest, ManifestArtifact, PostgresInfo
from stackforge_operator.backup.store import BackupStore, MiB, MultipartUpload, StoreConfig
from stackforge_operator.models.backup import BackupPolicySpec, Retention
from stackforge_operator.reconcile.backup import database_replaced, databases_of, retain
from tests.support.s3_server import S3Server, multipart_uploads

TENANT = "globex"
NOW = datetime.now(UTC).replace(microsecond=0)


def _store(s3: S3Server, bucket: str) -> BackupStore:
    return BackupStore(StoreConfig(bucket=bucket, prefix="sf"), client=s3.client())


class _Stream(io.RawIOBase):
    """``total`` deterministic bytes, then EOF, or an error after ``fail_after`` bytes."""

    def __init__(self, total: int, fail_after: int | None = None) -> None:
        self.total, self.sent, self.fail_after = total, 0, fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise OSError("producer died")
        n = min(len(buffer), self.total - self.sent, 1 << 20)
        block = hashlib.sha256(str(self.sent).encode()).digest() * (n // 32 + 1)
        buffer[:n] = block[:n]
        self.sent += n
        return n


def _expected_sha256(total: int) -> str:
    digest = hashlib.sha256()
    stream = io.BufferedReader(_Stream(total))
    while chunk := stream.read(MiB):
        digest.update(chunk)
    return digest.hexdigest()


def _uploaded_whole(store: BackupStore, key: str, total: int) -> int:
    """Upload ``total`` bytes in 5 MiB (first) parts; check the object reads back
    whole with the hash it was given; the number of parts."""
    upload = MultipartUpload(store.client, store.config, key, part_size=5 * MiB)
    upload.upload_from(io.BufferedReader(_Stream(total)))
    result = upload.complete()
    assert result.size_bytes == total
    assert result.sha256 == _expected_sha256(total)
    sink = io.BytesIO()
    assert store.download(key, sink) == result.sha256
    assert len(sink.getvalue()) == total
    return result.parts


def test_multipart_upload_streams_and_hashes(s3_server: S3Server, s3_bucket: str) -> None:
    assert _uploaded_whole(_store(s3_server, s3_bucket), "sf/x/blob", 23 * MiB + 123) == 5


def test_parts_grow_with_the_object_and_it_reads_back_whole(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten thousand parts of a fixed 8 MiB stopped every dump past 78 GiB; parts
    now double every PART_GROWTH_EVERY (here 2) up to the cap (here 10 MiB),
    parts of different sizes in one object, as S3 takes them."""
    monkeypatch.setattr(store_module, "PART_GROWTH_EVERY", 2)
    monkeypatch.setattr(store_module, "MAX_GROWN_PART_SIZE", 10 * MiB)
    total = 5 * MiB * 2 + 10 * MiB * 2 + 3 * MiB  # 5, 5, 10, 10, then 3 of a 10
    assert _uploaded_whole(_store(s3_server, s3_bucket), "sf/x/grown", total) == 5


def test_an_upload_holds_more_than_fixed_parts_could() -> None:
    assert store_module.part_size_of(1, 8 * MiB) == 8 * MiB
    assert store_module.part_size_of(2_000, 8 * MiB) == 8 * MiB
    assert store_module.part_size_of(2_001, 8 * MiB) == 16 * MiB
    assert store_module.part_size_of(10_000, 8 * MiB) == 32 * MiB
    # A larger first part than the cap is kept, never shrunk.
    assert store_module.part_size_of(9_000, 64 * MiB) == 64 * MiB
    assert store_module.capacity(8 * MiB) > 200 * 1024 * MiB > 10_000 * 8 * MiB


def test_a_failing_stream_is_aborted_without_a_trace(s3_server: S3Server, s3_bucket: str) -> None:
    store = _store(s3_server, s3_bucket)
    upload = MultipartUpload(store.client, store.config, "sf/x/broken", part_size=5 * MiB)
    with pytest.raises(OSError, match="producer died"):
        upload.upload_from(io.BufferedReader(_Stream(50 * MiB, fail_after=12 * MiB)))
    assert multipart_uploads(store.client, s3_bucket) == ["sf/x/broken"]
    upload.abort()
    assert multipart_uploads(store.client, s3_bucket) == []
    assert store.client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


def _run_id(when: datetime, suffix: str) -> str:
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{suffix}"


def _complete_run(store: BackupStore, when: datetime, suffix: str,
                  database: str | None = None) -> str:
    run_id = _run_id(when, suffix)
    prefix = store.config.run_prefix(TENANT, run_id)
    dump = store.put_bytes(prefix + "postgres.dump", b"dump " + run_id.encode())
    postgres = None if database is None else PostgresInfo(
        server_version="15.18", server_version_num=150018, database="app",
        system_identifier=database)
    store.write_manifest(
        Manifest(
            tenant=TENANT, run_id=run_id, bucket=store.bucket, prefix=prefix.rstrip("/"),
            started_at=when, finished_at=when + timedelta(minutes=2),
            artifacts=[ManifestArtifact(name="postgres", key=dump.key,
                                        size_bytes=dump.size_bytes, sha256=dump.sha256)],
            postgres=postgres,
        )
    )
    return run_id


def _open_upload(store: BackupStore, run_id: str) -> str:
    key = store.config.run_prefix(TENANT, run_id) + "postgres.dump"
    upload = MultipartUpload(store.client, store.config, key)
    upload.start()
    return key


@pytest.fixture
def history(s3_server: S3Server, s3_bucket: str) -> Iterator[dict[str, str]]:
    """Ten nightly backups, a stale and a fresh incomplete run, an abandoned upload."""
    store = _store(s3_server, s3_bucket)
    runs = {}
    for days in range(10):
        runs[f"complete-{days}"] = _complete_run(store, NOW - timedelta(days=days, hours=1),
                                                 f"c{days:05d}")
    stale = _run_id(NOW - timedelta(days=2), "stale0")
    store.put_bytes(store.config.run_prefix(TENANT, stale) + "configuration.json", b"{}")
    runs["stale"] = stale
    fresh = _run_id(NOW - timedelta(minutes=20), "fresh0")
    store.put_bytes(store.config.run_prefix(TENANT, fresh) + "configuration.json", b"{}")
    runs["fresh-upload"] = _open_upload(store, fresh)
    runs["fresh"] = fresh
    abandoned = _run_id(NOW - timedelta(days=1), "gone00")
    runs["abandoned-upload"] = _open_upload(store, abandoned)
    store.put_bytes(f"sf/{TENANT}/README.txt", b"not a run")
    store.put_bytes("sf/other-tenant/" + _run_id(NOW - timedelta(days=90), "aaaaaa")
                    + "/postgres.dump", b"another tenant")
    yield runs


def test_listing_tells_complete_from_incomplete(
    s3_server: S3Server, s3_bucket: str, history: dict[str, str]
) -> None:
    runs = {r.run_id: r for r in _store(s3_server, s3_bucket).list_runs(TENANT)}
    assert runs[history["complete-0"]].complete
    assert not runs[history["stale"]].complete
    assert not runs[history["fresh"]].complete
    assert [u.key for u in runs[history["fresh"]].open_uploads] == [history["fresh-upload"]]
    # A run that exists only as an open upload is still listed.
    assert history["abandoned-upload"].split("/")[2] in runs
    assert len(runs) == 13
    manifests = _store(s3_server, s3_bucket).manifests(TENANT)
    assert [m.run_id for m in manifests] == sorted(
        history[f"complete-{d}"] for d in range(10)
    )


def test_retention_deletes_what_it_selects_and_sweeps_abandoned_uploads(
    s3_server: S3Server, s3_bucket: str, history: dict[str, str]
) -> None:
    store = _store(s3_server, s3_bucket)
    report = apply_retention(store, TENANT, Retention(keep_last=3), NOW,
                             in_progress_grace=timedelta(hours=7))
    remaining = {r.run_id for r in store.list_runs(TENANT)}
    assert remaining == {history["complete-0"], history["complete-1"], history["complete-2"],
                         history["fresh"]}
    assert set(report.deleted) == (
        {history[f"complete-{d}"] for d in range(3, 10)}
        | {history["stale"], history["abandoned-upload"].split("/")[2]}
    )
    # The fresh run's upload may still finish; the abandoned one is gone.
    assert multipart_uploads(store.client, s3_bucket) == [history["fresh-upload"]]
    # Not ours: untouched.
    keys = {o["Key"] for o in store.client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert f"sf/{TENANT}/README.txt" in keys
    assert any(k.startswith("sf/other-tenant/") for k in keys)
    # Applying it again changes nothing.
    again = apply_retention(store, TENANT, Retention(keep_last=3), NOW)
    assert again.deleted == [] and again.aborted_uploads == []


def test_a_run_marked_running_keeps_its_upload(
    s3_server: S3Server, s3_bucket: str, history: dict[str, str]
) -> None:
    store = _store(s3_server, s3_bucket)
    abandoned_run = history["abandoned-upload"].split("/")[2]
    apply_retention(store, TENANT, Retention(keep_last=20), NOW, running={abandoned_run})
    assert history["abandoned-upload"] in multipart_uploads(store.client, s3_bucket)
    # Later, once the Job is known gone, it is swept.
    apply_retention(store, TENANT, Retention(keep_last=20), NOW)
    assert history["abandoned-upload"] not in multipart_uploads(store.client, s3_bucket)


def test_runs_started_since_the_oldest_running_job_are_kept_past_the_grace(
    s3_server: S3Server, s3_bucket: str, history: dict[str, str]
) -> None:
    """The operator knows a running Job, not its run id: every run without a
    manifest that started since the oldest running Job may be that Job's, and a
    dump may run past the grace. Runs begun before it are not protected."""
    store = _store(s3_server, s3_bucket)
    abandoned_run = history["abandoned-upload"].split("/")[2]  # a day old, no manifest
    kept = apply_retention(store, TENANT, Retention(keep_last=20), NOW,
                           running_since=NOW - timedelta(days=1, minutes=1))
    assert abandoned_run not in kept.deleted and kept.aborted_uploads == []
    assert history["stale"] in kept.deleted  # two days old: begun before that Job
    assert history["abandoned-upload"] in multipart_uploads(store.client, s3_bucket)
    # Once the only running Job is one started since, the run is garbage.
    swept = apply_retention(store, TENANT, Retention(keep_last=20), NOW,
                            running_since=NOW - timedelta(hours=1))
    assert abandoned_run in swept.deleted
    assert history["abandoned-upload"] not in multipart_uploads(store.client, s3_bucket)
    # A complete backup is never protected this way: retention still decides,
    # for one started since the oldest running Job too.
    trimmed = apply_retention(store, TENANT, Retention(keep_last=1), NOW,
                              running_since=NOW - timedelta(days=1, hours=2))
    assert history["complete-1"] in trimmed.deleted  # started 1 d 1 h ago
    assert history["complete-0"] not in trimmed.deleted


def test_backups_of_a_database_made_afresh_never_push_the_old_ones_out(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """The tenant's volume lost and its database made again, empty: three nights
    of its dumps under keepLast 2 deleted every backup of the old database. The
    old database's backups stay, the new one's are pruned as ever, and what
    happened is said once, at the first backup of the new database."""
    store = _store(s3_server, s3_bucket)
    old = [_complete_run(store, NOW - timedelta(days=days, hours=1), f"o{days:05d}", "111")
           for days in range(9, 3, -1)]
    spec = BackupPolicySpec.model_validate({
        "tenantRef": {"name": TENANT}, "retention": {"keepLast": 2},
        "storage": {"bucket": s3_bucket, "prefix": "sf"}})
    new = []
    for days in (3, 2, 1):
        new.append(_complete_run(store, NOW - timedelta(days=days, hours=1),
                                 f"n{days:05d}", "222"))
        manifests = store.manifests(TENANT)
        said = database_replaced(manifests)
        if days == 3:
            assert said is not None and said.startswith(
                f"backup {new[0]} is of another database (system identifier 222) than "
                f"backup {old[-1]} before it (111)"), said
            assert "keeps the 6 backups of other databases" in said, said
        else:
            assert said is None, said
        assert retain(store, TENANT, spec, NOW, [], databases=databases_of(manifests)) is None
    assert sorted(r.run_id for r in store.list_runs(TENANT)) == sorted([*old, *new[1:]])


def test_manifests_are_read_once_until_they_change(
    s3_server: S3Server, s3_bucket: str, history: dict[str, str]
) -> None:
    """A policy reads all its tenant's manifests at every pass, every 5 s while a
    run lasts: one GET per backup each time (some 400 for a year of dailies)."""
    store = _store(s3_server, s3_bucket)
    gets: list[str] = []
    store.client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"]))
    first = store.manifests(TENANT)
    assert len(first) == 10 and len(gets) == 10
    again = store.manifests(TENANT)
    assert again == first and len(gets) == 10
    # An object written again (by hand) is read again, that one only.
    changed = first[0].model_copy(update={"finished_at": NOW})
    store.write_manifest(changed)
    later = store.manifests(TENANT)
    assert len(gets) == 11 and gets[-1].endswith(f"{first[0].run_id}/manifest.json")
    assert later[0].finished_at == NOW and later[1:] == first[1:]


def test_a_retention_the_bucket_refuses_is_a_reason_not_an_error(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """The policy's reconcile reports it and goes on to write the status."""
    store = BackupStore(StoreConfig(bucket=f"{s3_bucket}-missing", prefix="sf"),
                        client=s3_server.client())
    spec = BackupPolicySpec.model_validate({
        "tenantRef": {"name": TENANT}, "retention": {"keepLast": 1},
        "storage": {"bucket": f"{s3_bucket}-missing"}})
    reason = retain(store, TENANT, spec, NOW, [])
    assert reason is not None and "NoSuchBucket" in reason, reason


def test_retention_counts_days_and_months_in_the_schedules_time_zone(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """A nightly backup at 21:00 in New York on the last of February is
    February's month-end backup, though it is 1 March in UTC."""
    store = _store(s3_server, s3_bucket)
    feb_27 = _complete_run(store, datetime(2027, 2, 28, 2, tzinfo=UTC), "feb27n")
    feb_28 = _complete_run(store, datetime(2027, 3, 1, 2, tzinfo=UTC), "feb28n")
    march = _complete_run(store, datetime(2027, 3, 10, 2, tzinfo=UTC), "mar10n")
    spec = BackupPolicySpec.model_validate({
        "tenantRef": {"name": TENANT}, "retention": {"monthly": 2},
        "storage": {"bucket": s3_bucket}})
    now = datetime(2027, 3, 11, 12, tzinfo=UTC)
    assert retain(store, TENANT, spec, now, [], "America/New_York") is None
    assert [m.run_id for m in store.manifests(TENANT)] == [feb_28, march]
    assert store.read_manifest(TENANT, feb_27) is None


def test_an_unreadable_manifest_leaves_out_its_run_only(
    s3_server: S3Server, s3_bucket: str, history: dict[str, str]
) -> None:
    """A manifest of a newer format (or damaged) must not hide the other backups:
    reading them raised, and the policy's every reconcile with it."""
    store = _store(s3_server, s3_bucket)
    newer = _complete_run(store, NOW - timedelta(minutes=5), "newer0")
    key = store.manifest_key(TENANT, newer)
    written = json.loads(store.get_bytes(key))
    store.put_bytes(key, json.dumps({**written, "formatVersion": 2}).encode())
    damaged = _complete_run(store, NOW - timedelta(minutes=4), "broken")
    store.put_bytes(store.manifest_key(TENANT, damaged), b"{not json")
    assert [m.run_id for m in store.manifests(TENANT)] == sorted(
        history[f"complete-{d}"] for d in range(10))


def test_deleting_a_run_removes_all_its_objects(
    s3_server: S3Server, s3_bucket: str, history: dict[str, str]
) -> None:
    store = _store(s3_server, s3_bucket)
    run_id = history["complete-4"]
    assert store.delete_run(TENANT, run_id) == 2
    assert store.read_manifest(TENANT, run_id) is None
    assert store.client.list_objects_v2(
        Bucket=s3_bucket, Prefix=store.config.run_prefix(TENANT, run_id)
    ).get("KeyCount", 0) == 0
