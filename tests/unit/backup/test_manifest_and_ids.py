"""Run ids and manifest.json: formats the operator and the runner must agree on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stackforge_operator.backup.manifest import Manifest, ManifestArtifact, PostgresInfo
from stackforge_operator.backup.runid import is_run_id, new_run_id, run_started_at
from stackforge_operator.models.backup import BackupPolicyStatus, RunResult

WHEN = datetime(2026, 11, 27, 2, 0, 0, tzinfo=UTC)


def test_new_run_ids_sort_by_time_and_parse_back() -> None:
    first = new_run_id(WHEN)
    later = new_run_id(WHEN.replace(minute=1))
    assert first.startswith("20261127T020000Z-") and len(first) == len("20261127T020000Z-") + 6
    assert first < later
    assert run_started_at(first) == WHEN
    assert new_run_id(WHEN) != first  # random suffix: same second, different runs


@pytest.mark.parametrize(
    "text",
    ["", "manifest.json", "20261127T020000Z", "20261127T020000Z-", "20261327T020000Z-abc",
     "20261127T020000-abc", "20261127T020000Z-ABC", "20261127T020000Z-a_b", "x20261127T020000Z-a"],
)
def test_foreign_names_are_not_run_ids(text: str) -> None:
    assert not is_run_id(text) or run_started_at(text) is None


def test_suffix_may_be_derived_by_the_caller() -> None:
    assert run_started_at("20261127T020000Z-backup-acme-29148720") == WHEN


def _manifest() -> Manifest:
    return Manifest(
        tenant="acme",
        run_id="20261127T020000Z-abcdef",
        bucket="backups",
        prefix="stackforge/acme/20261127T020000Z-abcdef",
        started_at=WHEN,
        finished_at=WHEN.replace(minute=3),
        artifacts=[
            ManifestArtifact(name="configuration", key="k/configuration.json", size_bytes=10,
                             sha256="a" * 64, content_type="application/json", format="json"),
            ManifestArtifact(name="postgres", key="k/postgres.dump", size_bytes=1000,
                             sha256="b" * 64, format="pg_dump-custom"),
        ],
        postgres=PostgresInfo(server_version="15.18 (Debian 15.18-0+deb12u1)",
                              server_version_num=150018, database="app",
                              row_counts={"public.t": 3}),
        tools={"pg_dump": "pg_dump (PostgreSQL) 15.18"},
    )


def test_manifest_round_trips_in_camel_case() -> None:
    manifest = _manifest()
    data = manifest.to_json()
    assert b'"runId"' in data and b'"rowCounts"' in data and b'"sizeBytes"' in data
    assert Manifest.from_json(data) == manifest


def test_manifest_from_a_newer_runner_still_reads() -> None:
    data = _manifest().to_json().replace(b'"tenant"', b'"somethingNew": 1, "tenant"', 1)
    assert Manifest.from_json(data).tenant == "acme"


def test_manifest_becomes_the_status_record() -> None:
    run = _manifest().to_backup_run(job_name="backup-acme-123")
    assert run.result == RunResult.SUCCEEDED
    assert run.sha256 == "b" * 64 and run.size_bytes == 1010
    assert run.postgres_version == "15.18"
    assert run.location == "s3://backups/stackforge/acme/20261127T020000Z-abcdef/"
    assert [a.name for a in run.artifacts] == ["configuration", "postgres"]
    # and it fits the CRD's status model
    BackupPolicyStatus.model_validate({"lastSuccessfulRun": run.model_dump(by_alias=True)})


def test_a_bad_sha256_is_refused() -> None:
    with pytest.raises(ValueError, match="sha256"):
        ManifestArtifact(name="postgres", key="k", size_bytes=1, sha256="not-hex")
