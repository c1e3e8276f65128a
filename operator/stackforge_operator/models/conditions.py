"""Condition types of the three kinds (docs/api.md, "Status and conditions").

Names only: computing them is status.py's job.  Kept here so that the
operator, the Argo CD health check and the tests spell them one way.
"""

from __future__ import annotations

from typing import Final

# Every kind (kstatus): Ready is the roll-up; when it is False exactly one of
# Reconciling (still converging) or Stalled (needs a human) is True.
READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"

# StackForgeTenant: one per component, then the cross-resource summaries.
POSTGRES_READY: Final = "PostgresReady"
POOLER_READY: Final = "PoolerReady"
REDIS_READY: Final = "RedisReady"
KAFKA_READY: Final = "KafkaReady"
KONG_READY: Final = "KongReady"
CONSUL_READY: Final = "ConsulReady"
APPS_READY: Final = "AppsReady"
BACKUP_HEALTHY: Final = "BackupHealthy"
DRILL_PASSING: Final = "DrillPassing"
CERTIFICATES_VALID: Final = "CertificatesValid"
ISOLATED: Final = "Isolated"

TENANT_COMPONENT_CONDITIONS: Final = (
    POSTGRES_READY,
    POOLER_READY,
    REDIS_READY,
    KAFKA_READY,
    KONG_READY,
    CONSUL_READY,
    APPS_READY,
)

# BackupPolicy.
LAST_BACKUP_SUCCEEDED: Final = "LastBackupSucceeded"
BACKUP_FRESH: Final = "BackupFresh"
CONTINUOUS_ARCHIVING: Final = "ContinuousArchiving"
PHYSICAL_BACKUPS: Final = "PhysicalBackups"

# DRDrill.
LAST_DRILL_PASSED: Final = "LastDrillPassed"
OBJECTIVES_MET: Final = "ObjectivesMet"
