from __future__ import annotations

from typing import Any

from stackforge_operator.reconcile.immutable import (
    ClaimResize,
    claim_resizes,
    grown_templates,
    keep_live_claim_templates,
)


def _sts(storage: str) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "postgres"},
        "spec": {
            "replicas": 2,
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": storage}}},
            }],
        },
    }


def _claim(storage: str) -> dict[str, Any]:
    return {"spec": {"resources": {"requests": {"storage": storage}}}}


def test_live_templates_replace_desired_ones_and_drop_their_status() -> None:
    live = _sts("20Gi")
    live["spec"]["volumeClaimTemplates"][0]["status"] = {"phase": "Pending"}
    kept = keep_live_claim_templates(_sts("50Gi"), live)
    template = kept["spec"]["volumeClaimTemplates"][0]
    assert template["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "status" not in template
    assert kept["spec"]["replicas"] == 2


def test_growth_is_detected_by_value_not_spelling() -> None:
    assert grown_templates(_sts("50Gi"), _sts("20Gi"))
    assert not grown_templates(_sts("20480Mi"), _sts("20Gi"))
    assert not grown_templates(_sts("10Gi"), _sts("20Gi"))


def test_only_this_statefulsets_smaller_claims_are_resized() -> None:
    claims = {
        "data-postgres-0": _claim("20Gi"),
        "data-postgres-1": _claim("50Gi"),
        "data-postgres-replica-0": _claim("20Gi"),  # another StatefulSet's claim
        "other-postgres-0": _claim("1Gi"),
    }
    assert claim_resizes(_sts("50Gi"), claims) == [ClaimResize("data-postgres-0", "50Gi")]
