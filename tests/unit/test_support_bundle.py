"""The support bundle (pure): Secrets redacted, files under a verified manifest."""

from __future__ import annotations

import base64
import io
import tarfile
from typing import Any

import pytest

from stackforge_operator import support_bundle as bundle


def test_a_secrets_values_are_replaced_by_their_length_and_its_keys_kept() -> None:
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "postgres-app", "managedFields": [{"manager": "x"}],
        "annotations": {bundle.LAST_APPLIED: '{"data": {"password": "aHVudGVyMg=="}}',
                        "other": "kept"}},
        "data": {"password": base64.b64encode(b"hunter2").decode()},
        "stringData": {"url": "https://hooks.example/s3cr3t"}}
    safe = bundle.redacted(secret)
    text = repr(safe)
    assert "aHVudGVyMg" not in text and "s3cr3t" not in text
    assert safe["data"] == {"password": "<redacted: 12 characters>"}
    assert safe["metadata"]["annotations"] == {bundle.LAST_APPLIED: "<redacted>",
                                               "other": "kept"}
    assert "managedFields" not in safe["metadata"]
    assert secret["data"]["password"] == "aHVudGVyMg=="  # the original untouched


def test_other_kinds_pass_unchanged() -> None:
    config_map = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    assert bundle.redacted(config_map) == config_map


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"r/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_an_archive_verifies_and_a_changed_one_does_not() -> None:
    files = {"objects/Pod/a.yaml": b"kind: Pod\n", "logs/a/c.log": b"line\n"}
    data = bundle.archive(files, "stackforge-report-acme")
    assert bundle.verify(data) == files
    # A file changed after its manifest was written.
    changed = {**files, "logs/a/c.log": b"other\n", bundle.MANIFEST: bundle.manifest(files)}
    with pytest.raises(ValueError, match="do not match"):
        bundle.verify(_tar(changed))
    with pytest.raises(ValueError, match="do not match"):
        bundle.verify(_tar(files))  # no manifest at all


def test_the_files_of_a_bundle() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "postgres-0"}}
    secret = {"kind": "Secret", "metadata": {"name": "app"}, "data": {"password": "c2VjcmV0"}}
    files = bundle.assemble([pod, secret], [{"reason": "Killing"}],
                            {("postgres-0", "postgres"): "ready\n"}, {"status.txt": "ok\n"})
    assert sorted(files) == ["events.yaml", "logs/postgres-0/postgres.log",
                             "objects/Pod/postgres-0.yaml", "objects/Secret/app.yaml",
                             "status.txt"]
    assert b"c2VjcmV0" not in files["objects/Secret/app.yaml"]
    assert files["logs/postgres-0/postgres.log"] == b"ready\n"
