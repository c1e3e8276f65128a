"""kopf settings for the StackForge operator, fixed from day one.

Storage prefix and finalizer name are part of the on-cluster contract: changing
them later orphans the annotations and finalizers already written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import kopf

from stackforge_operator import API_GROUP, informer
from stackforge_operator.notify import destinations

FINALIZER = f"{API_GROUP}/finalizer"
STORAGE_PREFIX = API_GROUP
# Blocking clients (kubernetes, boto3) run in this many worker threads.
MAX_SYNC_WORKERS = 8
# Tenants reconciled at the same time.
RECONCILE_WORKERS = 8
# Retry delay of a TemporaryError whose delay is None or 0 (kopf's own default is 60 s;
# every error kube.py raises names its delay).
RETRY_SECONDS = 10.0
# ... and of a reconcile that failed unexpectedly (a bug, or an error nobody
# translated): logged with its traceback.
UNEXPECTED_RETRY_SECONDS = 30.0
# An object's consecutive failures wait twice as long each time, from the delay
# the error asks, up to this (controller.py).
RETRY_MAX_SECONDS = float(os.environ.get("STACKFORGE_RETRY_MAX_SECONDS", "120"))
# How often a converged tenant is looked at again (drift in children that are
# not watched, e.g. Secrets). Environment override for tests and tuning.
RESYNC_SECONDS = float(os.environ.get("STACKFORGE_RESYNC_SECONDS", "60"))
# The longest a converged tenant goes without a full reconcile while nothing the
# watch caches hold for it changes: its resyncs in between are skipped
# (controller.py). It bounds how late anything a watch missed is seen (a metrics
# API that appears is watched: cached_kinds.py).
FULL_RESYNC_SECONDS = float(os.environ.get("STACKFORGE_FULL_RESYNC_SECONDS", "3600"))
# A stalled tenant waits for a human; look again this often (a Secret that
# appears is not a watch event the operator receives).
STALLED_RECHECK_SECONDS = float(os.environ.get("STACKFORGE_STALLED_RECHECK_SECONDS", "30"))
# The liveness endpoint fails when a controller's queue has had keys waiting and no
# reconcile finished for this long, or one reconcile has run this long: the process
# is alive but does no work, and only a restart mends that. Far above any healthy
# reconcile (API calls time out well before).
WEDGED_SECONDS = float(os.environ.get("STACKFORGE_WEDGED_SECONDS", "300"))
# Reconciles read children, pods, namespaces, tenants, policies and drills from watch
# caches (watch_cache.py); "off" reads the API server each time, as before them
# (the baseline bench/scale.py measures against).
WATCH_CACHES = os.environ.get("STACKFORGE_WATCH_CACHES", "on") != "off"
# Whether an add-on's CRDs exist (cert-manager, the Prometheus Operator) is read
# from the watch of CRDs (cached_kinds.py); without it (caches not synced yet),
# looked up again after this long: each look is a request.
ADDON_CHECK_SECONDS = float(os.environ.get("STACKFORGE_ADDON_CHECK_SECONDS", "30"))
# How long a refused in-place recovery request is looked at again (a moment the
# archive reaches, a confirmation added): not for ever, or a request refused
# while the tenant was suspended would restore a weeks-old moment once resumed.
RECOVERY_REQUEST_SECONDS = float(os.environ.get("STACKFORGE_RECOVERY_REQUEST_SECONDS", "3600"))


# Name of the setting that lets a BackupPolicy without access keys use an ambient
# S3 identity: the operator's own (its status reads, retention, evidence) and its
# pods' (the runners', the primary's archiving: the node's role, unless the
# cluster gives their ServiceAccounts one). Any tenant's policy may name any
# bucket and prefix, so one identity shared by every tenant would read and prune
# wherever it may, for each of them. Off unless a cluster's operator says
# "allow" (every tenant trusted with that identity), as CloudNativePG asks for
# inheritFromIAMRole explicitly.
AMBIENT_S3_IDENTITY_ENV = "STACKFORGE_AMBIENT_S3_IDENTITY"


def ambient_s3_identity_allowed() -> bool:
    return os.environ.get(AMBIENT_S3_IDENTITY_ENV, "deny").strip().lower() == "allow"


# How long an in-place recovery's restore may take before it is rolled back
# (reconcile/recovery.py): a restore that never ends must not keep the apps down.
RECOVERY_RESTORE_DEADLINE_SECONDS = float(
    os.environ.get("STACKFORGE_RECOVERY_RESTORE_DEADLINE_SECONDS", "7200"))
# Its first step (the apps and the primary stopping; a pod stuck terminating on a
# lost node never does) and its roll-back (the old primary Ready again): past
# these, it rolls back, or ends Failed, rather than wait for ever.
RECOVERY_STOP_DEADLINE_SECONDS = float(
    os.environ.get("STACKFORGE_RECOVERY_STOP_DEADLINE_SECONDS", "900"))
RECOVERY_ROLL_BACK_DEADLINE_SECONDS = float(
    os.environ.get("STACKFORGE_RECOVERY_ROLL_BACK_DEADLINE_SECONDS", "1800"))
# And its verification: a Job never made (refused by a quota or an admission
# policy) or never ending kept the apps down for ever.
# A switch-over (the restored primary restarted without the restore) taking longer
# than this is said in the recovery's message: it cannot be rolled back.
RECOVERY_SWITCH_OVER_WARNING_SECONDS = float(
    os.environ.get("STACKFORGE_RECOVERY_SWITCH_OVER_WARNING_SECONDS", "900"))
RECOVERY_VERIFY_DEADLINE_SECONDS = float(
    os.environ.get("STACKFORGE_RECOVERY_VERIFY_DEADLINE_SECONDS", "3600"))
# How late, beyond its archive_timeout, a tenant's newest archived WAL segment may
# be before ContinuousArchiving turns False (pgBackRest pushes in the background,
# and a slow bucket takes a while). Lower only to see a failure sooner (tests).
ARCHIVE_MARGIN_SECONDS = float(os.environ.get("STACKFORGE_ARCHIVE_MARGIN_SECONDS", "60"))
# How long after an isolation begins its NetworkPolicies surely refuse new
# connections: the rest of that reconcile (the policies are written after the
# moment is taken) and the enforcer's lag, seconds at most. The primary closes
# the network sessions that began before then; a lift is reported no sooner, so
# that no session begun after the lift can be taken for one of the isolation's.
ISOLATION_SETTLE_SECONDS = float(os.environ.get("STACKFORGE_ISOLATION_SETTLE_SECONDS", "10"))
# How long the app, Kong and pooler pods of an isolated tenant wait for the
# evidence bundle (their logs) before their deletion closes their sessions
# anyway (reconcile/isolation.py): no bucket, or one away, must not keep an
# intruder's session open for good.
ISOLATION_EVIDENCE_WAIT_SECONDS = float(
    os.environ.get("STACKFORGE_ISOLATION_EVIDENCE_WAIT_SECONDS", "300"))
# With peering: how long a replica's keep-alive stays valid. A killed active
# replica is replaced once its record expires, i.e. within this time (kopf's
# default, 60 s, is too slow for a 30 s failover). kopf renews the record
# 5-10 s before it expires (not separately configurable), so much below
# MIN_PEERING_LIFETIME a busy replica could miss its own renewal and be
# taken over while still working.
PEERING_LIFETIME_ENV = "STACKFORGE_PEERING_LIFETIME_SECONDS"
MIN_PEERING_LIFETIME = 10
DEFAULT_PEERING_LIFETIME = 20


def peering_lifetime(environ: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(
        PEERING_LIFETIME_ENV, str(DEFAULT_PEERING_LIFETIME))
    try:
        seconds = int(raw)
    except ValueError:
        raise ValueError(f"{PEERING_LIFETIME_ENV}={raw}: not a whole number of seconds") from None
    if seconds < MIN_PEERING_LIFETIME:
        raise ValueError(f"{PEERING_LIFETIME_ENV}={raw}: at least {MIN_PEERING_LIFETIME} s")
    return seconds

# Notifications (notify/). The runbook: "Notify customers if >15 min downtime".
NOT_READY_NOTIFY_SECONDS = float(os.environ.get("STACKFORGE_NOT_READY_NOTIFY_SECONDS", "900"))
# How often a tenant's status.usage is read again (a ResourceQuota and the metrics
# API): figures that move all the time would otherwise rewrite every status at
# every resync.
USAGE_REFRESH_SECONDS = float(os.environ.get("STACKFORGE_USAGE_REFRESH_SECONDS", "300"))
# How often drill sandboxes are looked over for a DRDrill deleted while no
# operator watched (reconcile/drill_orphans.py); one LIST of labelled Namespaces.
DRILL_ORPHAN_SWEEP_SECONDS = float(
    os.environ.get("STACKFORGE_DRILL_ORPHAN_SWEEP_SECONDS", "600"))
# Volume use, from the kubelets' /stats/summary (volume_stats.py): on unless
# "off"; the kubelets' serving certificates are checked against this CA file (the
# cluster's CA when empty), or not at all with STACKFORGE_KUBELET_INSECURE_TLS=true
# (as metrics-server's --kubelet-insecure-tls, for kubelets with self-signed ones).
VOLUME_STATS = os.environ.get("STACKFORGE_VOLUME_STATS", "on") != "off"
KUBELET_CA_FILE = os.environ.get("STACKFORGE_KUBELET_CA_FILE") or None
KUBELET_INSECURE_TLS = os.environ.get("STACKFORGE_KUBELET_INSECURE_TLS", "false") == "true"
KUBELET_TIMEOUT_SECONDS = 3.0
# How long one node's answer serves every tenant there, and how long a node whose
# kubelet did not answer is left alone.
KUBELET_STATS_SECONDS = float(os.environ.get("STACKFORGE_KUBELET_STATS_SECONDS", "60"))
KUBELET_STATS_RETRY_SECONDS = 300.0
# ... and the operators' one: "Service down for >2 minutes" (ComponentDegraded).
DEGRADED_NOTIFY_SECONDS = float(os.environ.get("STACKFORGE_DEGRADED_NOTIFY_SECONDS", "120"))
# One HTTP attempt may take this long; a hanging receiver costs a sender slot, no more.
NOTIFY_TIMEOUT_SECONDS = float(os.environ.get("STACKFORGE_NOTIFY_TIMEOUT_SECONDS", "10"))
# Attempts per message, and the first retry delay (doubling, capped at NOTIFY_MAX_BACKOFF).
# Thirteen span 17 to 24 minutes (1 s, 2 s, ... 256 s, then 300 s three times,
# each less up to a quarter for jitter): a receiver away for a quarter of an
# hour still gets the message. Six spanned 31 s, never reaching the cap.
NOTIFY_ATTEMPTS = int(os.environ.get("STACKFORGE_NOTIFY_ATTEMPTS", "13"))
NOTIFY_BACKOFF_SECONDS = float(os.environ.get("STACKFORGE_NOTIFY_BACKOFF_SECONDS", "1"))
NOTIFY_MAX_BACKOFF_SECONDS = 300.0


def notify_destinations(environ: Mapping[str, str] | None = None) -> destinations.Destinations:
    """Where notifications may connect (STACKFORGE_NOTIFY_DENIED_NETWORKS and
    STACKFORGE_NOTIFY_ALLOWED_NETWORKS over the defaults); ValueError names a bad one."""
    return destinations.from_environ(os.environ if environ is None else environ)


def apply_settings(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.execution.max_workers = MAX_SYNC_WORKERS
    # Ask the API server to end each watch well before load balancers would
    # silently drop it, and notice a stalled stream ourselves.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # kopf lists the custom resources before it watches them; unpaged, an
    # operator restarted on a thousand tenants parsed one response of all of them
    # at once, the memory peak the informers' paging removed for the children.
    settings.watching.chunk_size = informer.LIST_PAGE
    # kopf's own retries (its watches of the custom resources, peering): capped at
    # a few seconds, so that a watch is back within seconds of the API server's
    # return. kopf's default sequence (1, 1, 2, ... 21 s) left it up to 8 s late
    # after a 10 s outage; a failed attempt every 3 s costs nothing meanwhile.
    settings.networking.error_backoffs = (0.5, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3)
    # Events are posted on purpose by the reconcilers; routine INFO logs stay logs.
    settings.posting.level = logging.WARNING
    settings.peering.lifetime = peering_lifetime()

# Container images (the operator's own, which backup and drill Jobs run, and the
# components'): image_catalog.py.
