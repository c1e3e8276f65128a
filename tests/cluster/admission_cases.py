"""Malformed objects the API server must refuse at admission, as data.

Every case starts from an object in ``examples/`` and breaks one thing.  The
``expect`` text is what must appear in the API server's error: schema errors
name the field path (``spec.components.apps[0].port``), CEL errors carry the
rule's message (which names the field too).

How to apply them:

* create with ``fieldValidation=Strict`` (kubectl's default): unknown-field
  cases (``strict=True``) are otherwise pruned silently instead of refused;
* namespaced manifests carry ``metadata.namespace: tenant-acme``; set it to
  the test's namespace before applying;
* every manifest has a distinct ``metadata.name``, so a case wrongly accepted
  cannot hide another one.

``UPDATE_CASES`` create ``original`` (which must succeed), then replace it
with ``modified`` (which must fail).  ``ACCEPTED_UPDATES`` are the positive
controls: the same rules must not refuse legitimate changes.

The unit tests check the same tables against the pydantic models and the CEL
rules offline (tests/unit/test_admission_cases.py).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = {
    "StackForgeTenant": "tenant-acme.yaml",
    "BackupPolicy": "backuppolicy-acme.yaml",
    "DRDrill": "drdrill-acme.yaml",
}
KINDS = tuple(FILES)
Manifest = dict[str, Any]


@cache
def _example(kind: str) -> Manifest:
    loaded: Manifest = yaml.safe_load((EXAMPLES / FILES[kind]).read_text())
    return loaded


def example(kind: str) -> Manifest:
    """A fresh copy of the example object of ``kind``."""
    return copy.deepcopy(_example(kind))


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _walk(obj: Any, path: str) -> tuple[Any, str | int]:
    steps: list[str | int] = [int(index) if index else key for key, index in _STEP.findall(path)]
    for step in steps[:-1]:
        obj = obj.setdefault(step, {}) if isinstance(step, str) else obj[step]
    return obj, steps[-1]


# Marks a field to remove rather than set.
DELETE = object()


ADMIN_NAME_MESSAGE = "those roles belong to the stack"


def changed(kind: str, name: str, changes: dict[str, Any]) -> Manifest:
    """The example of ``kind`` named ``name`` with ``{"spec.a[0].b": value}`` applied."""
    obj = example(kind)
    obj["metadata"]["name"] = name
    for path, value in changes.items():
        parent, last = _walk(obj, path)
        if value is DELETE:
            del parent[last]
        else:
            parent[last] = copy.deepcopy(value)
    return obj


@dataclass(frozen=True)
class Case:
    """One object that must be refused on create."""

    id: str
    kind: str
    manifest: Manifest
    expect: str
    strict: bool = False  # refused only with fieldValidation=Strict (unknown field)


@dataclass(frozen=True)
class UpdateCase:
    """``original`` is accepted; replacing it with ``modified`` must be refused."""

    id: str
    kind: str
    original: Manifest
    modified: Manifest
    expect: str


T, BP, DR = KINDS
CRON_MESSAGE = "schedule must be a cron expression"


def _case(kind: str, id_: str, changes: dict[str, Any], expect: str, strict: bool = False) -> Case:
    prefix = {T: "t", BP: "bp", DR: "dr"}[kind]
    return Case(id_, kind, changed(kind, f"{prefix}-{id_}"[:56], changes), expect, strict)


def _app(**fields: Any) -> dict[str, Any]:
    app = {"name": "extra", "image": "registry.example.com/acme/extra:1.0.0", "port": 8080}
    app.update(fields)
    return app


def _tenant_cases() -> list[Case]:
    c: Callable[..., Case] = lambda *a, **k: _case(T, *a, **k)  # noqa: E731
    apps = "spec.components.apps"
    return [
        c("bad-tier", {"spec.tier": "Platinum"}, "spec.tier"),
        c("lowercase-tier", {"spec.tier": "growth"}, "spec.tier"),
        c("missing-tier", {"spec.tier": DELETE}, "spec.tier"),
        c("bad-provider", {"spec.provider": "gcp"}, "spec.provider"),
        c(
            "unknown-component",
            {"spec.components.mongodb": {"enabled": True}},
            "spec.components.mongodb",
            strict=True,
        ),
        c("unknown-spec-field", {"spec.replicaCount": 3}, "spec.replicaCount", strict=True),
        c("malformed-domain", {"spec.domain": "Acme_Example.com"}, "spec.domain"),
        c("single-label-domain", {"spec.domain": "acme"}, "spec.domain"),
        c(
            "tls-issuer-and-secret",
            {"spec.tls.secretName": "acme-tls"},
            "tls must set exactly one of issuerRef or secretName",
        ),
        c("tls-neither", {"spec.tls": {}}, "tls must set exactly one of issuerRef or secretName"),
        c("tls-without-domain", {"spec.domain": DELETE}, "tls requires domain"),
        c("bootstrap-both-ways",
          {"spec.bootstrap": {"recovery": {"tenant": "globex"}, "logical": {"tenant": "acme"}}},
          "bootstrap takes exactly one of recovery and logical"),
        c("bootstrap-neither-way", {"spec.bootstrap": {}},
          "bootstrap takes exactly one of recovery and logical"),
        c("dump-chosen-twice",
          {"spec.bootstrap": {"logical": {"tenant": "acme", "backupId": "20261201T020000Z-ab",
                                          "finishedBefore": "2026-12-01T02:00:00Z"}}},
          "backupId and finishedBefore each choose the dump: give one of them"),
        c("dump-bad-backup-id",
          {"spec.bootstrap": {"logical": {"tenant": "acme", "backupId": "yesterday"}}},
          "spec.bootstrap.logical.backupId"),
        c("bad-issuer-kind", {"spec.tls.issuerRef.kind": "Vault"}, "spec.tls.issuerRef.kind"),
        c("duplicate-app-names", {f"{apps}[1].name": "api"}, f"{apps}[1]"),
        c(
            "duplicate-app-paths",
            {f"{apps}[1].path": "/api"},
            "every app service needs its own Kong route path",
        ),
        c("bad-app-name", {f"{apps}[0].name": "Web_API"}, f"{apps}[0].name"),
        # A Service's name must start with a letter.
        c("app-name-starting-with-a-digit", {f"{apps}[0].name": "1api"}, f"{apps}[0].name"),
        c("app-port-zero", {f"{apps}[0].port": 0}, f"{apps}[0].port"),
        c("app-port-too-big", {f"{apps}[0].port": 70000}, f"{apps}[0].port"),
        c("negative-app-replicas", {f"{apps}[1].replicas": -1}, f"{apps}[1].replicas"),
        c("app-egress-not-a-cidr",
          {f"{apps}[0].egress": [{"cidr": "payments.example", "ports": [{"port": 443}]}]},
          f"{apps}[0].egress[0].cidr"),
        # The API server checks the format instead of the type: a list went through
        # until each formatted string got its CEL type rule (crdgen.STRING_RULE).
        c("app-egress-cidr-a-list",
          {f"{apps}[0].egress": [{"cidr": ["203.0.113.0/24"], "ports": [{"port": 443}]}]},
          f"{apps}[0].egress[0].cidr"),
        c("app-egress-without-ports", {f"{apps}[0].egress": [{"cidr": "203.0.113.0/24"}]},
          f"{apps}[0].egress[0].ports"),
        c("app-egress-port-zero",
          {f"{apps}[0].egress": [{"cidr": "203.0.113.0/24", "ports": [{"port": 0}]}]},
          f"{apps}[0].egress[0].ports[0].port"),
        c("app-runs-as-root", {f"{apps}[0].securityContext": {"runAsUser": 0}},
          f"{apps}[0].securityContext.runAsUser"),
        # Its Service would be the database's (selecting the app's pods).
        c("app-named-as-the-stack", {f"{apps}[0].name": "postgres",
                                     f"{apps}[0].path": "/postgres"},
          "the stack's own objects use this name"),
        c(
            "autoscaling-min-gt-max",
            {f"{apps}[0].autoscaling.minReplicas": 8},
            "autoscaling.minReplicas must be less than or equal to maxReplicas",
        ),
        c(
            "autoscaling-min-zero",
            {f"{apps}[0].autoscaling.minReplicas": 0},
            f"{apps}[0].autoscaling.minReplicas",
        ),
        c(
            "autoscaling-min-without-max",
            {f"{apps}[0].autoscaling.maxReplicas": DELETE},
            "autoscaling.minReplicas and autoscaling.maxReplicas must be set together",
        ),
        c(
            "autoscaling-cpu-over-100",
            {f"{apps}[0].autoscaling.targetCPUUtilizationPercentage": 150},
            f"{apps}[0].autoscaling.targetCPUUtilizationPercentage",
        ),
        c("empty-image", {f"{apps}[0].image": ""}, f"{apps}[0].image"),
        c("image-with-space", {f"{apps}[0].image": "acme/api 1.4"}, f"{apps}[0].image"),
        c("too-many-apps", {apps: [_app(name=f"app{i}", path=f"/a{i}") for i in range(21)]}, apps),
        c("route-path-not-absolute", {f"{apps}[0].path": "api"}, f"{apps}[0].path"),
        c(
            "postgres-version-too-old",
            {"spec.components.postgres.version": 9},
            "spec.components.postgres.version",
        ),
        c(
            "negative-read-replicas",
            {"spec.components.postgres.readReplicas": -1},
            "spec.components.postgres.readReplicas",
        ),
        c(
            "postgres-storage-not-quantity",
            {"spec.components.postgres.storage": "lots"},
            "spec.components.postgres.storage",
        ),
        # A claim of size 0 is refused, hence the StatefulSet made from it.
        # The names a Deployment takes: printable ASCII but '='.
        c("app-env-name-with-equals", {f"{apps}[0].env": {"A=B": "x"}},
          "printable ASCII characters other than '='"),
        c("app-env-name-not-ascii", {f"{apps}[0].env": {"café": "x"}},
          "printable ASCII characters other than '='"),
        c("redis-storage-zero", {"spec.components.redis.storage": "0"},
          "spec.components.redis.storage"),
        c("kafka-storage-zero", {"spec.components.kafka.storage": "0.0Gi"},
          "spec.components.kafka.storage"),
        c(
            "bad-pool-mode",
            {"spec.components.postgres.pooler.poolMode": "bogus"},
            "spec.components.postgres.pooler.poolMode",
        ),
        c(
            "pool-larger-than-connections",
            {"spec.components.postgres.pooler.defaultPoolSize": 600},
            "pooler.defaultPoolSize must not exceed pooler.maxClientConnections",
        ),
        c(
            "requests-exceed-limits",
            {"spec.components.postgres.resources.requests.cpu": "4"},
            "resources.requests must not exceed resources.limits",
        ),
        c(
            "memory-not-quantity",
            {"spec.components.postgres.resources.limits.memory": "12 GB"},
            "spec.components.postgres.resources.limits.memory",
        ),
        c(
            "zero-kafka-brokers",
            {"spec.components.kafka.replicas": 0},
            "spec.components.kafka.replicas",
        ),
        c(
            "negative-kong-replicas",
            {"spec.components.kong.replicas": -1},
            "spec.components.kong.replicas",
        ),
        c(
            "even-consul-quorum",
            {"spec.components.consul.replicas": 2},
            "spec.components.consul.replicas",
        ),
        c(
            "bad-redis-version",
            {"spec.components.redis.version": "latest"},
            "spec.components.redis.version",
        ),
        c(
            "bad-admin-email",
            {"spec.adminAccounts[0].email": "jane-at-acme"},
            "spec.adminAccounts[0].email",
        ),
        c("duplicate-admin", {"spec.adminAccounts[1].username": "jane"}, "spec.adminAccounts[1]"),
        c("bad-admin-role", {"spec.adminAccounts[0].role": "root"}, "spec.adminAccounts[0].role"),
        # The stack's own roles cannot be taken over by an admin account.
        c("admin-takes-the-superuser", {"spec.adminAccounts[0].username": "postgres"},
          ADMIN_NAME_MESSAGE),
        c("admin-takes-a-pg-role", {"spec.adminAccounts[0].username": "pg_monitor"},
          ADMIN_NAME_MESSAGE),
        c("invalid-backup-cron", {"spec.backup.schedule": "every day at 2"}, CRON_MESSAGE),
        c("backup-cron-minute-61", {"spec.backup.schedule": "61 2 * * *"}, CRON_MESSAGE),
        c("backup-cron-six-fields", {"spec.backup.schedule": "0 0 2 * * *"}, CRON_MESSAGE),
        c("bad-time-zone", {"spec.backup.timeZone": "Mars/Olympus Mons"}, "spec.backup.timeZone"),
        c("utc-offset-time-zone", {"spec.drill.timeZone": "+05:00"}, "spec.drill.timeZone"),
        c("invalid-drill-cron", {"spec.drill.schedule": "0 3 32 * *"}, CRON_MESSAGE),
        c("zero-rto", {"spec.drill.rtoSeconds": 0}, "spec.drill.rtoSeconds"),
        c("negative-rpo", {"spec.drill.rpoSeconds": -60}, "spec.drill.rpoSeconds"),
        c(
            "slack-ref-without-key",
            {"spec.notifications.slack.webhookUrlSecretRef.key": DELETE},
            "spec.notifications.slack.webhookUrlSecretRef.key",
        ),
        c(
            "bad-slack-channel",
            {"spec.notifications.slack.channel": "alerts"},
            "spec.notifications.slack.channel",
        ),
        c(
            "duplicate-webhook",
            {
                "spec.notifications.webhooks": [
                    {"name": "hook", "urlSecretRef": {"name": "s", "key": "a"}},
                    {"name": "hook", "urlSecretRef": {"name": "s", "key": "b"}},
                ]
            },
            "spec.notifications.webhooks[1]",
        ),
        c(
            "unknown-event",
            {"spec.notifications.events": ["Everything"]},
            "spec.notifications.events[0]",
        ),
        c("email-bad-recipient", {"spec.notifications.email.to": ["ops at stackforge.io"]},
          "spec.notifications.email.to[0]"),
        c("email-duplicate-recipient",
          {"spec.notifications.email.to": ["ops@stackforge.io", "ops@stackforge.io"]},
          "spec.notifications.email.to[1]"),
        c("email-in-clear-text", {"spec.notifications.email.security": "None"},
          "spec.notifications.email.security"),
        c("email-port-zero", {"spec.notifications.email.port": 0},
          "spec.notifications.email.port"),
        c("sms-number-not-e164", {"spec.notifications.sms.to": ["555-0100"]},
          "spec.notifications.sms.to[0]"),
        c("sms-without-recipients", {"spec.notifications.sms.to": []},
          "spec.notifications.sms.to"),
        c("sms-bad-field-name", {"spec.notifications.sms.fieldNames": {"to": "to number"}},
          "spec.notifications.sms.fieldNames.to"),
        c(
            "no-notification-channel",
            {"spec.notifications": {"events": ["BackupFailed"]}},
            "notifications must name at least one channel",
        ),
        # The tenant lives in its namespace; there is no spec.namespace to name another.
        c("namespace-field", {"spec.namespace": "tenant-other"}, "spec.namespace", strict=True),
        c("suspend-not-bool", {"spec.suspend": "yes"}, "spec.suspend"),
        c("suspend-window-start-is-end",
          {"spec.suspendWindows": [{"start": "0 20 * * *", "end": "0 20 * * *"}]},
          "start and end must be different schedules"),
        c("suspend-window-bad-cron",
          {"spec.suspendWindows": [{"start": "at eight", "end": "0 7 * * *"}]},
          "schedule must be a cron expression"),
        c("suspend-window-bad-zone",
          {"spec.suspendWindows": [{"start": "0 20 * * *", "end": "0 7 * * *",
                                    "timeZone": "+05:00"}]},
          "spec.suspendWindows[0].timeZone"),
        c("isolate-not-bool", {"spec.isolate": 1}, "spec.isolate"),
        c("bad-node-size", {"spec.nodes": {"size": "64cpu-256gb"}}, "spec.nodes.size"),
        c("quota-pods-zero", {"spec.quota": {"pods": 0}}, "spec.quota.pods"),
        c(
            "name-too-long",
            {"metadata.name": "a" * 60},
            "metadata.name must be a DNS label",
        ),
        c("name-with-dots", {"metadata.name": "acme.corp"}, "metadata.name must be a DNS label"),
    ]


def _backup_cases() -> list[Case]:
    c: Callable[..., Case] = lambda *a, **k: _case(BP, *a, **k)  # noqa: E731
    return [
        c("name-longer-than-a-label", {"metadata.name": "b" * 64},
          "metadata.name must be at most 63 characters"),
        c("missing-bucket", {"spec.storage.bucket": DELETE}, "spec.storage.bucket"),
        c("missing-storage", {"spec.storage": DELETE}, "spec.storage"),
        c("bad-bucket-name", {"spec.storage.bucket": "My_Bucket"}, "spec.storage.bucket"),
        c("missing-tenant-ref", {"spec.tenantRef": DELETE}, "spec.tenantRef"),
        c("invalid-cron", {"spec.schedule": "daily at 2am"}, CRON_MESSAGE),
        c("cron-hour-24", {"spec.schedule": "0 24 * * *"}, CRON_MESSAGE),
        c("cron-sunday-as-seven", {"spec.schedule": "0 2 * * 5-7"}, CRON_MESSAGE),
        c("bad-time-zone", {"spec.timeZone": "Europe/Berlin Time"}, "spec.timeZone"),
        c("endpoint-not-url", {"spec.storage.endpoint": "not a url"}, "spec.storage.endpoint"),
        c(
            "endpoint-ftp",
            {"spec.storage.endpoint": "ftp://s3.example.com"},
            "spec.storage.endpoint",
        ),
        c("grafana-url-bad", {"spec.grafana.url": "grafana:3000"}, "spec.grafana.url"),
        c("prefix-leading-slash", {"spec.storage.prefix": "/backups"}, "spec.storage.prefix"),
        c(
            "kms-without-key",
            {"spec.storage.serverSideEncryption": {"algorithm": "aws:kms"}},
            "serverSideEncryption.kmsKeyId is required with algorithm aws:kms",
        ),
        c(
            "aes-with-kms-key",
            {"spec.storage.serverSideEncryption.kmsKeyId": "alias/backups"},
            "serverSideEncryption.kmsKeyId is required with algorithm aws:kms",
        ),
        c(
            "bad-sse-algorithm",
            {"spec.storage.serverSideEncryption.algorithm": "rot13"},
            "spec.storage.serverSideEncryption.algorithm",
        ),
        c("retention-keep-last-zero", {"spec.retention.keepLast": 0}, "spec.retention.keepLast"),
        c("retention-negative-daily", {"spec.retention.daily": -1}, "spec.retention.daily"),
        c("retention-empty", {"spec.retention": {}}, "retention must set at least one of keepLast"),
        c(
            "retention-max-age-too-short",
            {"spec.retention.maxAgeDays": 30},
            "retention.maxAgeDays is shorter than the daily/weekly/monthly backups",
        ),
        c("unknown-target", {"spec.targets": ["Postgres", "Everything"]}, "spec.targets[1]"),
        c("duplicate-target", {"spec.targets": ["Postgres", "Postgres"]}, "spec.targets[1]"),
        c("empty-targets", {"spec.targets": []}, "spec.targets"),
        c(
            "grafana-target-without-grafana",
            {"spec.grafana": DELETE},
            "grafana is required when targets include GrafanaDashboards",
        ),
        c("deadline-too-short", {"spec.activeDeadlineSeconds": 5}, "spec.activeDeadlineSeconds"),
        c("unknown-field", {"spec.encryptionKey": "hunter2"}, "spec.encryptionKey", strict=True),
        c(
            "archiving-over-http",
            {"spec.storage.endpoint": "http://minio.storage.svc:9000",
             "spec.continuousArchiving": ARCHIVING},
            "continuousArchiving needs an https storage.endpoint",
        ),
        c(
            "physical-without-archiving",
            {"spec.physicalBackups": PHYSICAL},
            "physicalBackups needs continuousArchiving",
        ),
        c(
            "restore-namespace-not-a-name",
            {"spec.continuousArchiving": {**ARCHIVING, "allowedRestoreNamespaces": ["Tenant_B"]}},
            "spec.continuousArchiving.allowedRestoreNamespaces[0]",
        ),
        c(
            "dump-restore-namespace-not-a-name",
            {"spec.allowedDumpRestoreNamespaces": ["Tenant_B"]},
            "spec.allowedDumpRestoreNamespaces[0]",
        ),
        c(
            "restore-namespace-twice",
            {"spec.continuousArchiving": {**ARCHIVING,
                                          "allowedRestoreNamespaces": ["tenant-b", "tenant-b"]}},
            "spec.continuousArchiving.allowedRestoreNamespaces",
        ),
        c(
            "physical-two-retentions",
            {"spec.continuousArchiving": ARCHIVING,
             "spec.physicalBackups": {**PHYSICAL, "retention": {"fullCount": 2, "fullDays": 7}}},
            "physicalBackups.retention needs exactly one of fullCount and fullDays",
        ),
        c(
            "physical-bad-cron",
            {"spec.continuousArchiving": ARCHIVING,
             "spec.physicalBackups": {**PHYSICAL, "incrementalSchedule": "hourly"}},
            CRON_MESSAGE,
        ),
    ]


ARCHIVING = {"repositoryCipherSecretRef": {"name": "acme-archive", "key": "passphrase"}}
PHYSICAL = {"fullSchedule": "0 1 * * 0", "retention": {"fullCount": 2}}


def _drill_cases() -> list[Case]:
    c: Callable[..., Case] = lambda *a, **k: _case(DR, *a, **k)  # noqa: E731
    return [
        # Its sandboxes carry the name in a label: each would be refused.
        c("name-longer-than-a-label", {"metadata.name": "d" * 64},
          "metadata.name must be at most 63 characters"),
        c("zero-rto", {"spec.objectives.rtoSeconds": 0}, "spec.objectives.rtoSeconds"),
        c("negative-rto", {"spec.objectives.rtoSeconds": -5}, "spec.objectives.rtoSeconds"),
        c("zero-rpo", {"spec.objectives.rpoSeconds": 0}, "spec.objectives.rpoSeconds"),
        c(
            "by-id-without-id",
            {"spec.backup.source": "ById"},
            "backup.id is required with source ById",
        ),
        c(
            "latest-with-id",
            {"spec.backup.id": "20250101T020000Z-abc123"},
            "backup.id is required with source ById",
        ),
        c(
            "point-in-time-missing",
            {"spec.backup.source": "PointInTime"},
            "backup.pointInTime is required with source PointInTime",
        ),
        c(
            "point-in-time-not-a-time",
            {"spec.backup": {"source": "PointInTime", "pointInTime": "yesterday"}},
            "spec.backup.pointInTime",
        ),
        c("bad-backup-source", {"spec.backup.source": "Yesterday"}, "spec.backup.source"),
        c("backup-id-not-a-run-id", {"spec.backup": {"source": "ById", "id": "last-night"}},
          "spec.backup.id"),
        c(
            "physical-by-id",
            {"spec.backup": {"method": "Physical", "source": "ById",
                             "id": "20250101T020000Z-abc123"}},
            "a Physical restore takes Latest or PointInTime",
        ),
        c("bad-backup-method", {"spec.backup.method": "Snapshot"}, "spec.backup.method"),
        c("invalid-cron", {"spec.schedule": "monthly"}, CRON_MESSAGE),
        c("once-with-schedule", {"spec.once": True}, "once and schedule are mutually exclusive"),
        c("sandbox-ttl-too-short", {"spec.sandbox.ttlSeconds": 10}, "spec.sandbox.ttlSeconds"),
        c("history-limit-zero", {"spec.historyLimit": 0}, "spec.historyLimit"),
        c("history-limit-huge", {"spec.historyLimit": 1000}, "spec.historyLimit"),
        c(
            "duplicate-query-names",
            {"spec.checks.queries[1].name": "customers-present"},
            "spec.checks.queries[1]",
        ),
        c(
            "query-both-expectations",
            {"spec.checks.queries[0].expectedRows": 1},
            "query check must set exactly one of expectedRows or expectedValue",
        ),
        c(
            "query-no-expectation",
            {"spec.checks.queries[1].expectedRows": DELETE},
            "query check must set exactly one of expectedRows or expectedValue",
        ),
        c("empty-sql", {"spec.checks.queries[0].sql": ""}, "spec.checks.queries[0].sql"),
        c("missing-tenant-ref", {"spec.tenantRef": DELETE}, "spec.tenantRef"),
        c(
            "unknown-field",
            {"spec.verification": {"rowCounts": True}},
            "spec.verification",
            strict=True,
        ),
    ]


CASES: list[Case] = _tenant_cases() + _backup_cases() + _drill_cases()


BOOTSTRAP: dict[str, Any] = {"recovery": {"tenant": "globex"}}


def _update(
    kind: str, id_: str, before: dict[str, Any], after: dict[str, Any], expect: str
) -> UpdateCase:
    prefix = {T: "t", BP: "bp", DR: "dr"}[kind]
    name = f"{prefix}-u-{id_}"[:56]
    original = changed(kind, name, before)
    modified = copy.deepcopy(original)
    for path, value in after.items():
        parent, last = _walk(modified, path)
        if value is DELETE:
            del parent[last]
        else:
            parent[last] = copy.deepcopy(value)
    return UpdateCase(id_, kind, original, modified, expect)


UPDATE_CASES: list[UpdateCase] = [
    _update(
        T,
        "postgres-downgrade",
        {"spec.components.postgres.version": 16},
        {"spec.components.postgres.version": 15},
        "postgres.version cannot change on an existing tenant",
    ),
    _update(
        T,
        "postgres-major-upgrade",
        {},
        {"spec.components.postgres.version": 17},
        "create a new tenant with that version and restore a backup of this one into it",
    ),
    _update(
        T,
        "postgres-database-renamed",
        {"spec.components.postgres.database": "shop"},
        {"spec.components.postgres.database": "orders"},
        "postgres.database cannot change on an existing tenant",
    ),
    _update(
        T,
        "postgres-storage-shrink",
        {},
        {"spec.components.postgres.storage": "20Gi"},
        "postgres.storage cannot shrink",
    ),
    _update(
        T,
        "kafka-storage-shrink",
        {},
        {"spec.components.kafka.storage": "10Gi"},
        "kafka.storage cannot shrink",
    ),
    _update(
        T,
        "consul-below-a-majority",
        {"spec.components.consul.replicas": 3},
        {"spec.components.consul.replicas": 1},
        "consul.replicas cannot drop below a majority of the running servers",
    ),
    _update(
        T,
        "kafka-replicas-change",
        {"spec.components.kafka.replicas": 3},
        {"spec.components.kafka.replicas": 5},
        "kafka.replicas cannot change on an existing tenant",
    ),
    _update(T, "bootstrap-added", {}, {"spec.bootstrap": BOOTSTRAP},
            "bootstrap is immutable"),
    _update(T, "bootstrap-removed", {"spec.bootstrap": BOOTSTRAP}, {"spec.bootstrap": DELETE},
            "bootstrap is immutable"),
    _update(T, "bootstrap-changed", {"spec.bootstrap": BOOTSTRAP},
            {"spec.bootstrap.recovery.pointInTime": "2026-12-01T10:15:05Z"},
            "bootstrap is immutable"),
    _update(
        BP, "tenant-ref-changed", {}, {"spec.tenantRef.name": "globex"}, "tenantRef is immutable"
    ),
    _update(
        DR, "tenant-ref-changed", {}, {"spec.tenantRef.name": "globex"}, "tenantRef is immutable"
    ),
]

# Refused through the API server's defaulting (a field left out takes its
# ServerDefault before the rules run), which the local CEL evaluator does not do:
# the real API server only (tests/cluster/test_api.py).
SERVER_DEFAULTED_UPDATE_CASES: list[UpdateCase] = [
    _update(
        T,
        "postgres-database-dropped",
        {"spec.components.postgres.database": "shop"},
        {"spec.components.postgres.database": DELETE},
        "postgres.database cannot change on an existing tenant",
    ),
]

# Positive controls: legitimate updates the transition rules must let through.
ACCEPTED_UPDATES: list[UpdateCase] = [
    _update(T, "consul-five-to-three", {"spec.components.consul.replicas": 5},
            {"spec.components.consul.replicas": 3}, ""),
    _update(T, "consul-one-to-three", {"spec.components.consul.replicas": 1},
            {"spec.components.consul.replicas": 3}, ""),
    _update(T, "postgres-same-major", {}, {"spec.components.postgres.version": 15}, ""),
    _update(T, "postgres-storage-grow", {}, {"spec.components.postgres.storage": "80Gi"}, ""),
    _update(T, "tier-change", {}, {"spec.tier": "Enterprise"}, ""),
    # Dropping the field is let through: the operator refuses the tier's count if it
    # differs from the running cluster's (reconcile/tenant.py).
    _update(T, "kafka-replicas-dropped", {"spec.components.kafka.replicas": 3},
            {"spec.components.kafka.replicas": DELETE}, ""),
    _update(T, "isolate", {}, {"spec.isolate": True}, ""),
    _update(T, "bootstrapped-tier-change", {"spec.bootstrap": BOOTSTRAP},
            {"spec.tier": "Enterprise"}, ""),
    _update(BP, "schedule-change", {}, {"spec.schedule": "30 1 * * *"}, ""),
    _update(DR, "objectives-change", {}, {"spec.objectives.rtoSeconds": 1800}, ""),
]
