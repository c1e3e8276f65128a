from __future__ import annotations

from stackforge_operator.devcluster.localrun import changed_rows

HEADER = "NAMESPACE     NAME                                  TIER     READY   REASON   AGE"
TENANT = ("tenant-acme   stackforgetenant.stackforge.io/acme   Growth   True    "
          "AllComponentsReady   20s           Passed       41s")
DRILL = ("tenant-acme   drdrill.stackforge.io/acme-monthly   acme     Passed   True    "
         "DrillPassed   Passed    11    5     2s           17s")
BEFORE = "\n".join([HEADER, TENANT, DRILL])


def test_ages_going_by_are_not_news_but_a_changed_column_is() -> None:
    later = BEFORE.replace(" 20s ", " 5m10s ").replace(" 41s", " 6m").replace(" 2s ", " 3d ")
    assert changed_rows(BEFORE, later) == []
    # RTO/RPO (bare numbers) and every other column still count.
    rto = later.replace("Passed    11    5", "Passed    12    5")
    assert changed_rows(BEFORE, rto) == [rto.splitlines()[2]]
    failed = later.replace("True    AllComponentsReady", "False   Reconciling")
    assert changed_rows(BEFORE, failed) == [failed.splitlines()[1]]
