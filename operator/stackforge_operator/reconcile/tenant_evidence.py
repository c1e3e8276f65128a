"""Evidence of an isolated tenant: the runbook's security incident, step 2 ("capture
logs and evidence"), done by the operator when ``spec.isolate`` is set.

At the first reconcile that sees the isolation, before anyone rotates its
credentials or restores it, the tenant's objects (Secrets with their keys, not
their values), its namespace's events and every container's last log lines
go into one bundle (support_bundle.py: a .tar.gz with its MANIFEST.sha256),
written to the bucket of the tenant's first BackupPolicy (by name) under
``<prefix>/evidence/<tenant>/``, with the archive's own SHA-256 beside it. The
status records where, or why not yet (a failure is tried again at the next
reconcile while the tenant stays isolated).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import kopf
import yaml
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from stackforge_operator import kube, support_bundle
from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import EvidenceStatus, StackForgeTenantStatus
from stackforge_operator.reconcile import storage

logger = logging.getLogger(__name__)

LOG_LINES = 1000
# What a person investigating needs of the namespace (Secrets: the tenant's own only).
KINDS = (
    ("v1", "Pod"), ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job"),
    ("batch/v1", "CronJob"), ("networking.k8s.io/v1", "NetworkPolicy"),
)


# A failed capture is tried again this long after the last attempt, not at every
# pass: each pass wrote the failure with a new time, and that write woke the
# next pass at once, about fifty a second for as long as the isolation lasted
# (a tenant without a BackupPolicy, a bucket away).
RETRY_SECONDS = 60.0


def due(isolate: bool, old: StackForgeTenantStatus, now: datetime) -> bool:
    """A capture is due when the tenant is isolated and this isolation has none yet:
    it just began (the status said not isolated), or its capture failed a while ago."""
    if not isolate:
        return False
    if not old.isolated or old.evidence is None:
        return True
    return old.evidence.location is None and now >= retry_at(old.evidence)


def retry_at(evidence: EvidenceStatus) -> datetime:
    """When a failed capture (the attempt ``evidence`` records) is tried again."""
    return evidence.isolated_at + timedelta(seconds=RETRY_SECONDS)


def _policy(policies: Sequence[Mapping[str, Any]]) -> tuple[str, BackupPolicySpec] | None:
    for policy in sorted(policies, key=lambda p: p["metadata"]["name"]):
        try:
            return policy["metadata"]["name"], BackupPolicySpec.model_validate(
                policy.get("spec") or {})
        except ValidationError:
            continue
    return None


def _files(t: EffectiveTenant, body: Mapping[str, Any]) -> dict[str, bytes]:
    ns = t.namespace
    objects: list[Mapping[str, Any]] = [body]
    for api_version, kind in KINDS:
        objects += [{"apiVersion": api_version, "kind": kind, **o}
                    for o in kube.list_objects(api_version, kind, namespace=ns)]
    objects += [{"apiVersion": "v1", "kind": "Secret", **o} for o in kube.list_objects(
        "v1", "Secret", namespace=ns, label_selector=f"{TENANT_LABEL}={t.name}")]
    logs = {(pod, container): kube.pod_log(ns, pod, container, LOG_LINES)
            for pod, container in support_bundle.containers(objects)}
    events = kube.list_objects("v1", "Event", namespace=ns)
    status = yaml.safe_dump(body.get("status") or {}, sort_keys=False)
    return support_bundle.assemble(objects, events, logs, {"tenant-status.yaml": status})


def capture(t: EffectiveTenant, body: Mapping[str, Any],
            policies: Sequence[Mapping[str, Any]], now: datetime) -> EvidenceStatus:
    chosen = _policy(policies)
    if chosen is None:
        return EvidenceStatus(isolated_at=now, error="no BackupPolicy of this tenant: no "
                                                     "bucket to write the evidence to")
    policy_name, spec = chosen
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    root = f"evidence-{t.name}-{stamp}"
    try:
        files = _files(t, body)
    except (kopf.TemporaryError, ApiException) as error:
        # The isolation must not wait for its evidence (a Forbidden pods/log of an
        # operator whose ClusterRole predates this, an API hiccup): said, retried.
        return EvidenceStatus(isolated_at=now, error=f"gathering: {str(error)[:900]}")
    data = support_bundle.archive(files, root)
    digest = hashlib.sha256(data).hexdigest()
    key = f"{spec.storage.prefix.strip('/')}/evidence/{t.name}/{root}.tar.gz".lstrip("/")
    try:
        with storage.policy_store(spec.storage, t.namespace) as store:
            extra = store.config.sse_args()
            store.client.put_object(Bucket=spec.storage.bucket, Key=key, Body=data,
                                    ContentType="application/gzip", **extra)
            store.client.put_object(Bucket=spec.storage.bucket, Key=f"{key}.sha256",
                                    Body=f"{digest}  {root}.tar.gz\n".encode(), **extra)
    except (BotoCoreError, ClientError, kopf.TemporaryError, ApiException, ValueError) as error:
        # Its Secrets unreadable (an API hiccup, a CA that is no PEM) as much as the
        # bucket away: said and retried, never the pass's end before the
        # isolating policies are applied.
        logger.warning("tenant %s: evidence not written to BackupPolicy %s's bucket: %s",
                       t.name, policy_name, type(error).__name__)
        return EvidenceStatus(isolated_at=now, error=f"BackupPolicy {policy_name}'s bucket: "
                                                     f"{str(error)[:900]}")
    location = f"s3://{spec.storage.bucket}/{key}"
    logger.info("tenant %s: isolation evidence written to %s (%d files)", t.name, location,
                len(files))
    return EvidenceStatus(isolated_at=now, location=location, sha256=digest, files=len(files),
                          captured_at=now)
