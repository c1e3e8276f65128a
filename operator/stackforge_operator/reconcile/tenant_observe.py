"""What a tenant reconcile reads besides its own children: references, the TLS
certificate, the BackupPolicies and DRDrills that name it, cert-manager, the
read replicas' lag."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kopf
from cryptography import x509
from pydantic import ValidationError

from stackforge_operator import (
    API_GROUP,
    API_VERSION,
    config,
    kube,
    replication,
    volume_stats,
    watch_cache,
)
from stackforge_operator import usage as tenant_usage
from stackforge_operator.builders import ingress, postgres
from stackforge_operator.builders import namespace as namespace_builder
from stackforge_operator.builders.common import TENANT_LABEL, operator_namespace, selector_labels
from stackforge_operator.models import conditions as types
from stackforge_operator.models.backup import BackupPolicyStatus, RunResult
from stackforge_operator.models.common import ConditionStatus, SecretKeyRef
from stackforge_operator.models.drill import DRDrillStatus, Verdict
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import (
    CERTIFICATE_WARNING_DAYS,
    RESERVED_NAMESPACES_TEXT,
    CertificateStatus,
    LastBackupSummary,
    LastDrillSummary,
    ReplicaStatus,
    StackForgeTenantSpec,
    UsageStatus,
    reserved_namespace,
)
from stackforge_operator.status import Observation, Problem, find

API = f"{API_GROUP}/{API_VERSION}"
TENANT_KIND = "StackForgeTenant"
_CERT_MANAGER_CRD = "certificates.cert-manager.io"
# The Prometheus Operator's kinds the tenant uses (builders/monitoring.py).
_PROMETHEUS_OPERATOR_CRDS = ("prometheusrules.monitoring.coreos.com",
                             "servicemonitors.monitoring.coreos.com")
_CACHE_SECONDS = config.ADDON_CHECK_SECONDS
_cache_lock = threading.Lock()
# CRD name -> (when looked up, whether it exists)
_crds_seen: dict[str, tuple[float, bool]] = {}
# When the metrics API was last found missing: asked again only after _CACHE_SECONDS,
# not for every tenant's usage refresh (an idle thousand tenants would otherwise
# make hundreds of failing LISTs a minute).
_metrics_api_missing_at: float | None = None
_API_SERVICE_API = "apiregistration.k8s.io/v1"
# The name metrics-server (and every other metrics API provider) registers.
_METRICS_API_SERVICE = "v1beta1.metrics.k8s.io"


def validation_summary(error: ValidationError, limit: int = 3) -> str:
    """Field-named reasons, e.g. "spec.components.apps.0.port: ..."."""
    parts = [
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:limit]
    ]
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def placement_problem(meta: Mapping[str, Any],
                      namespace_labels: Mapping[str, str] | None = None) -> Problem | None:
    """Why the tenant described by ``meta`` may not run where it is, or None.

    A tenant needs a namespace of its own, and its name must be unique across
    the cluster: backups in the object store, metrics and alerts are keyed by
    the name alone. Of two tenants that collide, the one the operator has built
    already keeps its place, else the older; the other waits (Stalled) until it
    is gone. ``namespace_labels`` (the live namespace's) say which tenant the
    operator built there already.
    """
    name, namespace = meta["name"], meta["namespace"]
    if reserved_namespace(namespace):
        return Problem(
            "ReservedNamespace",
            f"namespace {namespace} is reserved: put the tenant in a namespace of its own "
            f"(not {RESERVED_NAMESPACES_TEXT})")
    if namespace == operator_namespace():
        # The tenant's default-deny NetworkPolicy would cut the operator off there.
        return Problem(
            "ReservedNamespace",
            f"namespace {namespace} is the operator's own: put the tenant in a namespace "
            "of its own")
    holder = (namespace_labels or {}).get(TENANT_LABEL)
    neighbour = namespace_claimant(
        meta, kube.list_objects(API, TENANT_KIND, namespace=namespace), holder)
    if neighbour is not None:
        return Problem(
            "NamespaceShared",
            f"namespace {namespace} already holds StackForgeTenant {neighbour['name']}: "
            "each tenant needs a namespace of its own")
    namesakes = kube.list_objects(API, TENANT_KIND, field_selector=f"metadata.name={name}")
    holders = {namespace: holder}
    for other in namesakes:
        elsewhere = other["metadata"]["namespace"]
        if elsewhere not in holders:
            holders[elsewhere] = _tenant_label_of(elsewhere)
    namesake = name_claimant(meta, namesakes, holders)
    if namesake is not None:
        return Problem(
            "TenantNameTaken",
            f"a StackForgeTenant named {name} already exists in namespace "
            f"{namesake['namespace']}: tenant names are unique across the cluster, because "
            "backups, metrics and alerts are keyed by them")
    return None


def live_placement_problem(meta: Mapping[str, Any]) -> Problem | None:
    """:func:`placement_problem` of a tenant as its live namespace's labels say
    (the Namespace watch cache): for those that refer to a tenant, not build it."""
    found = kube.get("v1", "Namespace", meta["namespace"])
    return placement_problem(meta, ((found or {}).get("metadata") or {}).get("labels"))


def namespace_claimant(
    meta: Mapping[str, Any], others: Sequence[Mapping[str, Any]], holder: str | None
) -> Mapping[str, Any] | None:
    """The metadata of the tenant of ``others`` that keeps the namespace against ``meta``.

    The one the namespace is labelled for (``holder``: the operator labels it
    when it first builds a tenant there), as long as it exists; else the oldest
    (first_claimant). Ages alone are not enough: creationTimestamp has whole
    seconds, so two tenants made within one second were ordered by their
    random uids, and a newcomer could take a running tenant's namespace.
    """
    if holder == meta["name"]:
        return None
    for other in others:
        found: Mapping[str, Any] = other["metadata"]
        if found["name"] == holder and found.get("uid") != meta.get("uid"):
            return found
    return first_claimant(meta, others)


def name_claimant(
    meta: Mapping[str, Any], namesakes: Sequence[Mapping[str, Any]],
    holders: Mapping[str, str | None],
) -> Mapping[str, Any] | None:
    """The metadata of the tenant of ``namesakes`` that keeps the name against ``meta``.

    ``holders`` has the tenant label of each namesake's namespace. A tenant the
    operator has built (its namespace labelled with its name) keeps the name
    against one it has not; among those alike the oldest does (first_claimant).
    Ages alone misorder tenants made within one second, as in namespace_claimant.
    """
    def built(m: Mapping[str, Any]) -> bool:
        return holders.get(str(m["namespace"])) == str(m["name"])

    others = [o for o in namesakes if o["metadata"].get("uid") != meta.get("uid")]
    rivals = [o for o in others if built(o["metadata"])]
    if built(meta):
        # Only another built one can contest it (a namespace relabelled by hand).
        return first_claimant(meta, rivals)
    if rivals:
        oldest: Mapping[str, Any] = min((o["metadata"] for o in rivals), key=_age)
        return oldest
    return first_claimant(meta, others)


def _tenant_label_of(namespace: str) -> str | None:
    """The tenant label of ``namespace`` (served by the Namespace watch cache)."""
    found = kube.get("v1", "Namespace", namespace)
    labels: Mapping[str, str] = ((found or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(TENANT_LABEL)


def _age(meta: Mapping[str, Any]) -> tuple[str, str]:
    # RFC 3339 timestamps of one API server compare correctly as strings.
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("uid") or ""))


def first_claimant(
    meta: Mapping[str, Any], others: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The metadata of the oldest of ``others`` created before ``meta`` (uid breaks ties)."""
    earlier = [o["metadata"] for o in others
               if o["metadata"].get("uid") != meta.get("uid") and _age(o["metadata"]) < _age(meta)]
    return min(earlier, key=_age) if earlier else None


_CRD_API = "apiextensions.k8s.io/v1"


def crd_installed(name: str) -> bool:
    """Whether a CRD exists: from the watch of CRDs' metadata (cached_kinds.py), or
    else asked and remembered briefly (add-ons are rarely installed or removed)."""
    watched = watch_cache.CACHES.holds(_CRD_API, "CustomResourceDefinition", name, None)
    if watched is not None:
        return watched
    with _cache_lock:
        seen = _crds_seen.get(name)
        if seen is not None and time.monotonic() - seen[0] < _CACHE_SECONDS:
            return seen[1]
    found = kube.get(_CRD_API, "CustomResourceDefinition", name) is not None
    with _cache_lock:
        _crds_seen[name] = (time.monotonic(), found)
    return found


def cert_manager_installed() -> bool:
    return crd_installed(_CERT_MANAGER_CRD)


def prometheus_operator_installed() -> bool:
    return all(crd_installed(name) for name in _PROMETHEUS_OPERATOR_CRDS)


def _secret_refs(spec: StackForgeTenantSpec) -> list[tuple[str, SecretKeyRef]]:
    refs: list[tuple[str, SecretKeyRef]] = []
    notifications = spec.notifications
    if notifications is not None:
        if notifications.slack is not None:
            refs.append(("spec.notifications.slack.webhookUrlSecretRef",
                         notifications.slack.webhook_url_secret_ref))
        refs += [(f"spec.notifications.webhooks[{hook.name}].urlSecretRef", hook.url_secret_ref)
                 for hook in notifications.webhooks]
        email, sms = notifications.email, notifications.sms
        if email is not None and email.credentials_secret_ref is not None:
            refs += [("spec.notifications.email.credentialsSecretRef", ref)
                     for ref in email.credentials_secret_ref.key_refs()]
        if email is not None and email.ca_secret_ref is not None:
            refs.append(("spec.notifications.email.caSecretRef", email.ca_secret_ref))
        if sms is not None:
            refs.append(("spec.notifications.sms.urlSecretRef", sms.url_secret_ref))
            if sms.authorization_secret_ref is not None:
                refs.append(("spec.notifications.sms.authorizationSecretRef",
                             sms.authorization_secret_ref))
    refs += [(f"spec.adminAccounts[{a.username}].passwordSecretRef", a.password_secret_ref)
             for a in spec.admin_accounts if a.password_secret_ref is not None]
    return refs


def supplied_admin_passwords(t: EffectiveTenant) -> dict[str, str]:
    """username -> password of the admin accounts whose password the customer's
    own Secret holds (an account whose Secret or key is missing is left out;
    missing_references reports it)."""
    found = {}
    for account in t.admin_accounts:
        ref = account.password_secret_ref
        if ref is None:
            continue
        secret = kube.get("v1", "Secret", ref.name, t.namespace)
        value = ((secret or {}).get("data") or {}).get(ref.key)
        if value is not None:
            found[account.username] = base64.b64decode(value).decode()
    return found


def missing_references(t: EffectiveTenant, spec: StackForgeTenantSpec) -> list[Problem]:
    """Secrets the spec names that do not exist (the schema cannot know)."""
    problems: list[Problem] = []
    for field, ref in _secret_refs(spec):
        secret = kube.get("v1", "Secret", ref.name, t.namespace)
        if secret is None:
            problem = Problem(
                "MissingSecret", f"{field}: Secret {t.namespace}/{ref.name} does not exist")
        elif ref.key not in (secret.get("data") or {}):
            problem = Problem(
                "MissingSecretKey",
                f"{field}: Secret {t.namespace}/{ref.name} has no key {ref.key!r}")
        else:
            continue
        # Once each: an SMTP account's two keys are in one Secret.
        if problem not in problems:
            problems.append(problem)
    tls_secret = spec.tls.secret_name if spec.tls is not None else None
    if tls_secret is not None and kube.get("v1", "Secret", tls_secret, t.namespace) is None:
        message = f"spec.tls.secretName: Secret {t.namespace}/{tls_secret} does not exist"
        problems.append(Problem("MissingSecret", message))
    return problems


def _not_after(secret: Mapping[str, Any]) -> datetime | None:
    pem = (secret.get("data") or {}).get("tls.crt")
    if not pem:
        return None
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(pem))
    except ValueError:
        return None
    return cert.not_valid_after_utc


def certificate(
    t: EffectiveTenant, spec: StackForgeTenantSpec, now: datetime
) -> tuple[CertificateStatus | None, Observation]:
    """The served certificate's expiry, and CertificatesValid (False under 30 days)."""
    name = ingress.tls_secret_name(t, spec.tls) if t.domain else None
    if name is None:
        return None, Observation(types.CERTIFICATES_VALID, ConditionStatus.TRUE, "NoTLS",
                                 "the tenant serves no TLS domain")
    secret = kube.get("v1", "Secret", name, t.namespace)
    not_after = _not_after(secret) if secret is not None else None
    if not_after is None:
        return CertificateStatus(secret_name=name), Observation(
            types.CERTIFICATES_VALID, ConditionStatus.UNKNOWN, "CertificatePending",
            f"no certificate in Secret {t.namespace}/{name} yet")
    days = int((not_after - now).total_seconds() // 86400)
    state = CertificateStatus(secret_name=name, not_after=not_after, days_remaining=days)
    if days <= 0:
        return state, Observation(types.CERTIFICATES_VALID, ConditionStatus.FALSE, "Expired",
                                  f"the certificate in {name} expired on {not_after:%Y-%m-%d}")
    if days < CERTIFICATE_WARNING_DAYS:
        return state, Observation(
            types.CERTIFICATES_VALID, ConditionStatus.FALSE, "ExpiringSoon",
            f"the certificate in {name} expires in {days} days ({not_after:%Y-%m-%d})")
    return state, Observation(types.CERTIFICATES_VALID, ConditionStatus.TRUE, "Valid",
                              f"{days} days left")


def _for_tenant(kind: str, tenant: str, namespace: str) -> list[dict[str, Any]]:
    # They resolve tenantRef in their own namespace (reconcile.common.referenced_tenant).
    return [o for o in kube.list_objects(API, kind, namespace=namespace)
            if ((o.get("spec") or {}).get("tenantRef") or {}).get("name") == tenant]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(run: Any) -> datetime:
    """When a run finished (or started), for picking the newest; runs without times sort first."""
    found: datetime | None = run.completion_time or run.start_time
    return found or _EPOCH


def backup_policies(tenant: str, namespace: str) -> list[dict[str, Any]]:
    """The BackupPolicies that back the tenant up (read once, for health and notifications)."""
    return _for_tenant("BackupPolicy", tenant, namespace)


def backup_health(
    policies: Sequence[Mapping[str, Any]],
) -> tuple[Observation, LastBackupSummary | None]:
    """BackupHealthy from the tenant's BackupPolicies' own conditions."""
    if not policies:
        return Observation(types.BACKUP_HEALTHY, ConditionStatus.UNKNOWN, "NoBackupPolicy",
                           "no BackupPolicy backs this tenant up"), None
    failing, unknown, newest = [], [], None
    # The newest complete backup of any policy (the age metric's): not the one
    # of the policy whose run is newest, which may have failed for a week.
    newest_success: datetime | None = None
    for policy in policies:
        name = policy["metadata"]["name"]
        st = BackupPolicyStatus.model_validate(policy.get("status") or {})
        for type_ in (types.LAST_BACKUP_SUCCEEDED, types.BACKUP_FRESH):
            found = find(st.conditions, type_)
            if found is None or found.status == ConditionStatus.UNKNOWN:
                unknown.append(name)
            elif found.status == ConditionStatus.FALSE:
                failing.append(f"{name}: {found.reason}: {found.message}")
        # Only on a policy that archives; failing WAL archiving (or physical
        # backups) is failing backups.
        for type_ in (types.CONTINUOUS_ARCHIVING, types.PHYSICAL_BACKUPS):
            found = find(st.conditions, type_)
            if found is not None and found.status == ConditionStatus.FALSE:
                failing.append(f"{name}: {found.reason}: {found.message}")
        # A policy stalled on its spec or its Secrets (a deleted key, a bucket
        # another policy uses) runs nothing and keeps the backup conditions it
        # had: Fresh for as long as nothing was backed up. (One whose bucket
        # cannot be read says its freshness is Unknown itself.)
        stalled = find(st.conditions, types.STALLED)
        fresh = find(st.conditions, types.BACKUP_FRESH)
        if (stalled is not None and stalled.status == ConditionStatus.TRUE
                and fresh is not None and fresh.status == ConditionStatus.TRUE
                and not any(entry.startswith(f"{name}: ") for entry in failing)):
            failing.append(f"{name}: {stalled.reason}: {stalled.message}")
        run = st.last_run
        if run is not None and (newest is None or _when(run) > _when(newest[1])):
            newest = (name, run)
        success = st.last_successful_run
        if success is not None and success.completion_time is not None and (
                newest_success is None or success.completion_time > newest_success):
            newest_success = success.completion_time
    summary = None
    if newest is not None:
        name, run = newest
        summary = LastBackupSummary(
            policy=name, run_id=run.id, result=run.result, completion_time=run.completion_time,
            last_success_time=newest_success,
            size_bytes=run.size_bytes if run.result == RunResult.SUCCEEDED else None)
    if failing:
        return Observation(types.BACKUP_HEALTHY, ConditionStatus.FALSE, "BackupUnhealthy",
                           "; ".join(failing)), summary
    if unknown:
        return Observation(types.BACKUP_HEALTHY, ConditionStatus.UNKNOWN, "NoBackupYet",
                           f"no complete backup yet: {', '.join(sorted(set(unknown)))}"), summary
    return Observation(types.BACKUP_HEALTHY, ConditionStatus.TRUE, "BackupsFresh",
                       f"{len(policies)} policies fresh"), summary


def drill_health(tenant: str, namespace: str) -> tuple[Observation, LastDrillSummary | None]:
    """DrillPassing from the newest verdict of the tenant's DRDrills."""
    newest: tuple[str, Any] | None = None
    for drill in _for_tenant("DRDrill", tenant, namespace):
        result = DRDrillStatus.model_validate(drill.get("status") or {}).last_result
        if result is not None and (newest is None or _when(result) > _when(newest[1])):
            newest = (drill["metadata"]["name"], result)
    if newest is None:
        return Observation(types.DRILL_PASSING, ConditionStatus.UNKNOWN, "NoDrillYet",
                           "no DR drill has finished"), None
    name, result = newest
    summary = LastDrillSummary(
        drill=name, run_id=result.run_id, verdict=result.verdict,
        completion_time=result.completion_time, rto_seconds=result.rto_seconds,
        rpo_seconds=result.rpo_seconds)
    if result.verdict == Verdict.PASSED:
        return Observation(types.DRILL_PASSING, ConditionStatus.TRUE, "DrillPassed",
                           f"{name} passed run {result.run_id}"), summary
    return Observation(types.DRILL_PASSING, ConditionStatus.FALSE, result.reason or "DrillFailed",
                       f"{name} failed run {result.run_id}: {result.message or ''}"), summary


def kong_selector(t: EffectiveTenant) -> str:
    """The gateway pods' selector, as the scale subresource reports it."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(t, "kong").items()))


def tenant_pods(t: EffectiveTenant) -> list[dict[str, Any]]:
    return kube.list_objects("v1", "Pod", namespace=t.namespace,
                             label_selector=f"{TENANT_LABEL}={t.name}")


def replicas(t: EffectiveTenant, previous: Sequence[ReplicaStatus],
             pods: Sequence[Mapping[str, Any]] | None) -> list[ReplicaStatus]:
    """The read replicas' lag (from the primary's exporter) and last re-clones;
    ``pods``: the tenant's, when the reconcile has read them already.

    Nothing is read for a tenant without read replicas, nor while it is
    suspended (no pod runs)."""
    if not t.postgres.enabled or t.postgres.read_replicas == 0 or t.suspend:
        return []
    if pods is None:
        pods = tenant_pods(t)
    primary = next((p for p in pods
                    if p["metadata"]["name"] == postgres.primary_pod(t.primary_ordinal)), None)
    names = [f"{postgres.REPLICA_NAME}-{i}" for i in range(t.postgres.read_replicas)]
    return replication.replica_statuses(names, replication.read_lag(primary), pods, previous)


def usage(t: EffectiveTenant, old: UsageStatus | None, now: datetime,
          pods: Sequence[Mapping[str, Any]] | None = None) -> UsageStatus:
    """status.usage: measured figures while fresh (USAGE_REFRESH_SECONDS) and
    complete, else read again: the quota's counts (from the watch cache: free),
    when the cluster serves the metrics API what the pods use, and what the
    volumes hold, from the kubelets (``pods``: the tenant's, when read already)."""
    if old is not None and tenant_usage.measures_anything(old) \
            and old.cpu.requested is not None \
            and (now - old.observed_at).total_seconds() < config.USAGE_REFRESH_SECONDS:
        return old
    quota = kube.get("v1", "ResourceQuota", namespace_builder.QUOTA_NAME, t.namespace)
    why: str | None = None
    metrics: list[dict[str, Any]] | None = None
    try:
        metrics = _pod_metrics(t.namespace)
    except kopf.TemporaryError as error:
        why = f"the metrics API failed: {str(error)[:200]}"
    else:
        if metrics is None:
            why = "the cluster serves no metrics API (metrics-server): used is unknown"
    volumes, why_volumes = volume_stats.claims(
        t.namespace, tenant_pods(t) if pods is None else pods)
    return tenant_usage.kept(old, tenant_usage.usage(quota, metrics, why, now, volumes,
                                                     why_volumes))


def metrics_api_registered() -> bool | None:
    """Whether an APIService serves the metrics API, from the watch of APIServices'
    metadata (cached_kinds.py); None while that watch knows nothing."""
    return watch_cache.CACHES.holds(_API_SERVICE_API, "APIService", _METRICS_API_SERVICE, None)


def _pod_metrics(namespace: str) -> list[dict[str, Any]] | None:
    """The namespace's PodMetrics; None when the cluster serves no metrics API."""
    global _metrics_api_missing_at
    if metrics_api_registered() is False:
        return None
    with _cache_lock:
        missing_at = _metrics_api_missing_at
    if missing_at is not None and time.monotonic() - missing_at < _CACHE_SECONDS:
        return None
    found = kube.list_pod_metrics(namespace)
    with _cache_lock:
        _metrics_api_missing_at = time.monotonic() if found is None else None
    return found
