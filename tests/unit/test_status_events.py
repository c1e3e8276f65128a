"""Which condition changes become Events (#18: one per meaningful transition, not
one per condition): a tenant's life told as the operator's reconciles see it."""

from __future__ import annotations

from datetime import UTC, datetime

from stackforge_operator.models.common import Condition, ConditionStatus
from stackforge_operator.status import transitions

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _conditions(**states: str) -> list[Condition]:
    """Type=status[:reason] -> conditions."""
    out = []
    for kind, state in states.items():
        status, _, reason = state.partition(":")
        out.append(Condition(type=kind, status=ConditionStatus(status),
                             reason=reason or f"{kind}{status}", message=f"{kind} is {status}",
                             last_transition_time=NOW))
    return out


# A Starter tenant's reconciles, from nothing to Ready.
FIRST = _conditions(Ready="False:ComponentsNotReady", Reconciling="True:ComponentsNotReady",
                    Stalled="False", PostgresReady="False", RedisReady="False",
                    KongReady="False", AppsReady="False", Isolated="False",
                    BackupHealthy="Unknown:NoBackupPolicy", DrillPassing="Unknown:NoDrill",
                    CertificatesValid="True")
SOME_UP = _conditions(Ready="False:ComponentsNotReady", Reconciling="True:ComponentsNotReady",
                      Stalled="False", PostgresReady="True", RedisReady="True",
                      KongReady="False", AppsReady="False", Isolated="False",
                      BackupHealthy="Unknown:NoBackupPolicy", DrillPassing="Unknown:NoDrill",
                      CertificatesValid="True")
READY = _conditions(Ready="True:AllComponentsReady", Reconciling="False:AllComponentsReady",
                    Stalled="False", PostgresReady="True", RedisReady="True", KongReady="True",
                    AppsReady="True", Isolated="False",
                    BackupHealthy="Unknown:NoBackupPolicy", DrillPassing="Unknown:NoDrill",
                    CertificatesValid="True")


def test_a_tenant_that_provisions_cleanly_posts_one_event() -> None:
    told = [*transitions([], FIRST), *transitions(FIRST, SOME_UP), *transitions(SOME_UP, READY)]
    assert told == [("Normal", "AllComponentsReady", "Ready=True: Ready is True")]


def test_a_component_going_down_and_back_posts_its_fall_and_the_recovery() -> None:
    down = _conditions(**{**{c.type: f"{c.status.value}:{c.reason}" for c in READY},
                          "Ready": "False:ComponentsNotReady",
                          "Reconciling": "True:ComponentsNotReady",
                          "PostgresReady": "False:CrashLoopBackOff"})
    assert transitions(READY, down) == [
        ("Warning", "ComponentsNotReady", "Ready=False: Ready is False"),
        ("Warning", "CrashLoopBackOff", "PostgresReady=False: PostgresReady is False"),
    ]
    assert transitions(down, READY) == [
        ("Normal", "AllComponentsReady", "Ready=True: Ready is True")]


def test_bad_news_at_the_first_reconcile_is_posted() -> None:
    stalled = _conditions(Ready="False:InvalidSpec", Reconciling="False:InvalidSpec",
                          Stalled="True:InvalidSpec", CertificatesValid="False:ExpiringSoon")
    assert transitions([], stalled) == [
        ("Warning", "InvalidSpec", "Ready=False: Ready is False"),
        ("Warning", "InvalidSpec", "Stalled=True: Stalled is True"),
        ("Warning", "ExpiringSoon", "CertificatesValid=False: CertificatesValid is False"),
    ]


def test_isolation_is_a_warning_and_its_end_normal_and_unknown_only_when_it_was_known() -> None:
    isolated = _conditions(**{**{c.type: f"{c.status.value}:{c.reason}" for c in READY},
                              "Isolated": "True:SecurityIncident"})
    assert transitions(READY, isolated) == [
        ("Warning", "SecurityIncident", "Isolated=True: Isolated is True")]
    assert transitions(isolated, READY) == [
        ("Normal", "IsolatedFalse", "Isolated=False: Isolated is False")]
    healthy = _conditions(BackupHealthy="True:BackupsFresh")
    gone = _conditions(BackupHealthy="Unknown:NoBackupPolicy")
    assert transitions(healthy, gone) == [
        ("Warning", "NoBackupPolicy", "BackupHealthy=Unknown: BackupHealthy is Unknown")]
    assert transitions([], gone) == []
