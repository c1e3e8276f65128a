"""The tenant as its backups and drills see it (reconcile/common.as_referenced)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from stackforge_operator.builders import backup
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.reconcile.common import as_referenced

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _tenant(bootstrap: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / "tenant-acme.yaml").read_text())
    if bootstrap is not None:
        body["spec"]["bootstrap"] = bootstrap
    body["status"] = status
    return body


def _seen(body: dict[str, Any]) -> EffectiveTenant:
    found = as_referenced(body)
    assert isinstance(found, tuple), found
    return found[0]


LOGICAL = {"logical": {"tenant": "shop", "finishedBefore": "2026-12-01T00:00:00Z"}}


def test_a_tenant_still_made_from_a_backup_has_its_writes_stopped() -> None:
    assert _seen(_tenant(LOGICAL, {})).writes_stopped
    assert _seen(_tenant(LOGICAL, {"bootstrap": {
        "method": "Logical", "sourceTenant": "shop", "sourceNamespace": "tenant-shop",
        "backupPolicy": "nightly"}})).writes_stopped
    done = _tenant(LOGICAL, {"bootstrap": {
        "method": "Logical", "sourceTenant": "shop", "sourceNamespace": "tenant-shop",
        "backupPolicy": "nightly", "completionTime": "2026-12-01T01:00:00Z"}})
    assert not _seen(done).writes_stopped
    assert not _seen(_tenant(None, {})).writes_stopped


def test_no_nightly_dump_runs_while_writes_are_stopped() -> None:
    """A dump then would be of a database half restored (or replaced), and the newest."""
    policy = BackupPolicySpec.model_validate(
        yaml.safe_load((EXAMPLES / "backuppolicy-acme.yaml").read_text())["spec"])
    t = _seen(_tenant(None, {}))
    running = backup.cron_job("nightly", t.namespace, policy, t, "0 2 * * *", "Etc/UTC")
    held = backup.cron_job("nightly", t.namespace, policy, replace(t, writes_stopped=True),
                           "0 2 * * *", "Etc/UTC")
    assert running["spec"]["suspend"] is False and held["spec"]["suspend"] is True


def test_a_runner_that_printed_no_result_is_known_by_the_end_of_its_log() -> None:
    from stackforge_operator.drill.outcome import parse_result
    from stackforge_operator.pod_health import result_of

    line = '{"verdict":"Failed","reason":"BackupNotFound","message":"no such run"}'
    assert result_of(["noise", f"log\n{line}"], parse_result)["reason"] == "BackupNotFound"
    died = "usage: stackforge-operator drill run ...\nerror: unrecognized arguments: --x"
    assert result_of([died], parse_result) == {}
    assert result_of([died], parse_result, log_tail_as_message=True) == {"message": died}
    assert result_of([], parse_result, log_tail_as_message=True) == {}
