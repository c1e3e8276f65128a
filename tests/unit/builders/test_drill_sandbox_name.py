"""A drill run's sandbox namespace name (builders/drill.sandbox_name)."""

from __future__ import annotations

from stackforge_operator.builders.drill import sandbox_name

RUN = "20261206T105056Z"


def test_drills_of_one_name_in_two_namespaces_started_in_one_second_get_two_sandboxes() -> None:
    one = sandbox_name("nightly-check", RUN, "uid-of-the-drill-in-tenant-a")
    other = sandbox_name("nightly-check", RUN, "uid-of-the-drill-in-tenant-b")
    assert one != other
    assert one.startswith("drill-nightly-check-20261206t105056z-")
    assert sandbox_name("nightly-check", RUN, "uid-of-the-drill-in-tenant-a") == one


def test_a_long_drill_name_is_shortened_never_the_run_or_the_digest() -> None:
    long_name = "x" * 63
    a, b = (sandbox_name(long_name, RUN, uid) for uid in ("uid-a", "uid-b"))
    assert len(a) == len(b) == 63 and a != b
    assert a.startswith("drill-xxx") and a[:-7].endswith("-20261206t105056z")
    assert sandbox_name("ends-" + "-" * 60, RUN, "u").count("--") == 0
