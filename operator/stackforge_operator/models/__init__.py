"""Pydantic models of the three kinds: the single source of truth for crds/*.yaml.

Parse with ``Model.model_validate(obj["spec"])``; write with
``model.model_dump(by_alias=True, exclude_none=True, mode="json")``.
"""

from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.models.common import Condition, ConditionStatus, update_violations
from stackforge_operator.models.drill import DRDrillSpec, DRDrillStatus
from stackforge_operator.models.tenant import StackForgeTenantSpec, StackForgeTenantStatus
from stackforge_operator.models.tiers import TIERS, NodeSize, Provider, Tier

__all__ = [
    "TIERS",
    "BackupPolicySpec",
    "BackupPolicyStatus",
    "Condition",
    "ConditionStatus",
    "DRDrillSpec",
    "DRDrillStatus",
    "NodeSize",
    "Provider",
    "StackForgeTenantSpec",
    "StackForgeTenantStatus",
    "Tier",
    "update_violations",
]
