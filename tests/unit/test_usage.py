"""A tenant's usage (pure): the quota's counts, and the metrics API's samples summed."""

from __future__ import annotations

from datetime import UTC, datetime

from stackforge_operator import usage
from stackforge_operator.metrics import tenant_health

NOW = datetime(2026, 12, 1, 21, tzinfo=UTC)
QUOTA = {"status": {"hard": {"requests.cpu": "4", "requests.memory": "8Gi",
                             "requests.storage": "50Gi", "pods": "20"},
                    "used": {"requests.cpu": "1500m", "requests.memory": "3Gi",
                             "requests.storage": "12Gi", "pods": "5"}}}


def test_requested_and_quota_from_the_quota_and_used_from_the_metrics_api() -> None:
    pods = [{"containers": [{"usage": {"cpu": "120250n", "memory": "50Mi"}},
                            {"usage": {"cpu": "3m", "memory": "1024Ki"}}]},
            {"containers": [{"usage": {"cpu": "0.1", "memory": "100000000"}}]}]
    found = usage.usage(QUOTA, pods, None, NOW)
    assert (found.cpu.requested, found.cpu.quota, found.cpu.used) == ("1500m", "4", "104m")
    # 50 Mi + 1 Mi + 95.4 Mi = 146.4 Mi, rounded up.
    assert (found.memory.requested, found.memory.quota, found.memory.used) == (
        "3Gi", "8Gi", "147Mi")
    assert (found.storage.requested, found.pods.quota) == ("12Gi", "20")
    assert found.storage.used is None and found.measured_by == "metrics.k8s.io"
    assert found.unmeasured is None and found.observed_at == NOW


def test_without_a_metrics_api_used_is_unknown_and_says_why() -> None:
    found = usage.usage(QUOTA, None, "no metrics API", NOW)
    assert found.cpu.used is None and found.memory.used is None
    assert found.unmeasured == "no metrics API" and found.measured_by is None
    # A quota not counted yet: nothing requested is known either.
    assert usage.usage(None, None, "x", NOW).cpu.requested is None


def test_the_figures_reach_the_metrics_in_base_units() -> None:
    status = {"usage": usage.usage(QUOTA, [], None, NOW).model_dump(mode="json",
                                                                    by_alias=True)}
    figures = {(r, f): v for r, f, v in tenant_health(status).usage}
    assert figures[("cpu", "requested")] == 1.5 and figures[("cpu", "used")] == 0
    assert figures[("memory", "quota")] == 8 * 2**30 and figures[("pods", "requested")] == 5
    assert ("storage", "used") not in figures


def test_unchanged_quota_counts_keep_their_first_time_and_measured_use_its_new_one() -> None:
    why = "no metrics API"
    first = usage.usage(QUOTA, None, why, NOW)
    later = datetime(2026, 12, 1, 22, tzinfo=UTC)
    assert usage.kept(first, usage.usage(QUOTA, None, why, later)) is first
    grown = {"status": {**QUOTA["status"], "used": {**QUOTA["status"]["used"], "pods": "6"}}}
    assert usage.kept(first, usage.usage(grown, None, why, later)).observed_at == later
    measured = usage.usage(QUOTA, [], None, NOW)
    assert usage.kept(measured, usage.usage(QUOTA, [], None, later)).observed_at == later
    assert usage.kept(None, first) is first


def _volume(namespace: str, claim: str | None, used: int, capacity: int | None = None
            ) -> dict[str, object]:
    volume: dict[str, object] = {"name": "data", "usedBytes": used}
    if capacity is not None:
        volume["capacityBytes"] = capacity
    if claim is not None:
        volume["pvcRef"] = {"name": claim, "namespace": namespace}
    return volume


def test_a_namespaces_claims_from_the_kubelets_summaries_each_once() -> None:
    """A claim mounted by two pods (or seen on two nodes) counts once, at its
    largest; another namespace's claims and claimless volumes are not storage."""
    node_a = {"pods": [
        {"volume": [_volume("t", "data-postgres-0", 30 * 2**20, 2**30),
                    _volume("t", None, 5 * 2**20)]},
        {"volume": [_volume("other", "data-postgres-0", 900 * 2**20)]}]}
    node_b = {"pods": [
        {"volume": [_volume("t", "shared", 1)]},
        {"volume": [_volume("t", "shared", 2 * 2**20 + 1, 10 * 2**20)]},
        {"volume": [_volume("t", "data-postgres-0", 29 * 2**20)]},
        {"volume": None}, {}]}
    claims = usage.claims_in([node_a, node_b], "t")
    assert [(c.claim, c.used, c.capacity) for c in claims.volumes] == [
        ("data-postgres-0", "30Mi", "1024Mi"), ("shared", "3Mi", "10Mi")]
    found = usage.usage(QUOTA, None, "no metrics API", NOW, claims)
    assert found.storage.used == "33Mi" and found.volumes_measured_by == "kubelet"
    assert found.volumes_unmeasured is None and found.volumes == claims.volumes
    assert usage.measures_anything(found) and found.cpu.used is None


def test_the_storage_used_is_the_exact_sum_rounded_once() -> None:
    """Each volume's figure is rounded up to a MiB; the sum is of the bytes, not of
    the rounded figures (which would count up to a MiB too many per volume)."""
    just_over = 2**20 + 1
    claims = usage.claims_in([{"pods": [{"volume": [
        _volume("t", "a", just_over), _volume("t", "b", just_over),
        _volume("t", "c", just_over)]}]}], "t")
    assert [c.used for c in claims.volumes] == ["2Mi", "2Mi", "2Mi"]
    assert usage.usage(QUOTA, None, "x", NOW, claims).storage.used == "4Mi"


def test_volumes_unmeasured_say_why_and_nothing_measured_keeps_the_old_figures() -> None:
    found = usage.usage(QUOTA, None, "no metrics API", NOW, None, "kubelet refused")
    assert found.storage.used is None and found.volumes == []
    assert (found.volumes_measured_by, found.volumes_unmeasured) == (None, "kubelet refused")
    assert not usage.measures_anything(found)
    later = datetime(2026, 12, 1, 22, tzinfo=UTC)
    assert usage.kept(found, usage.usage(QUOTA, None, "no metrics API", later, None,
                                         "kubelet refused")) is found
    # Measured volumes are written again with their new time.
    nothing = usage.MeasuredClaims([], 0)
    measured = usage.usage(QUOTA, None, "no metrics API", NOW, nothing)
    assert measured.storage.used == "0Mi"
    assert usage.kept(measured, usage.usage(QUOTA, None, "no metrics API", later, nothing)
                      ).observed_at == later


def test_the_volume_figure_reaches_the_metrics() -> None:
    claims = usage.claims_in([{"pods": [{"volume": [_volume("t", "c", 3 * 2**20)]}]}], "t")
    status = {"usage": usage.usage(QUOTA, None, "x", NOW, claims).model_dump(
        mode="json", by_alias=True)}
    figures = {(r, f): v for r, f, v in tenant_health(status).usage}
    assert figures[("storage", "used")] == 3 * 2**20
