from __future__ import annotations

from stackforge_operator.builders import common
from tests.unit.builders.tenants import tenant


def test_app_labels_extend_the_component_labels() -> None:
    t = tenant()
    sel = common.app_selector_labels(t, "api")
    assert sel == {**common.selector_labels(t, "app"), common.APP_LABEL: "api"}
    assert sel.items() <= common.app_labels(t, "api").items()
    assert common.app_labels(t, "api")[common.NAME_LABEL] == "api"
    assert common.app_metadata(t, "api")["labels"] == common.app_labels(t, "api")
    assert common.app_selector_labels(t, "api") != common.app_selector_labels(t, "web")


def test_config_hash_is_stable_and_separates_its_parts() -> None:
    assert common.config_hash("a") == common.config_hash("a")
    assert len(common.config_hash("a")) == 64
    assert common.config_hash("ab", "c") != common.config_hash("a", "bc")


def test_canonical_json_sorts_keys() -> None:
    assert common.canonical_json({"b": 1, "a": 2}) == common.canonical_json({"a": 2, "b": 1})


def test_pod_security_context_without_a_user_keeps_the_image_user() -> None:
    ctx = common.pod_security_context(None)
    assert ctx == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert common.pod_security_context(999)["runAsUser"] == 999


def test_container_security_context_read_only_is_opt_in() -> None:
    assert "readOnlyRootFilesystem" not in common.container_security_context()
    ro = common.container_security_context(read_only_root_filesystem=True)
    assert ro["readOnlyRootFilesystem"] is True


def test_secret_env_has_no_value() -> None:
    e = common.secret_env("X", "s", "k")
    assert e == {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}


def test_a_startup_probe_checks_as_the_readiness_probe_every_second_and_never_kills() -> None:
    readiness = {"tcpSocket": {"port": "metrics"}, "periodSeconds": 20, "failureThreshold": 3,
                 "initialDelaySeconds": 5, "successThreshold": 1, "timeoutSeconds": 2}
    startup = common.startup_probe(readiness)
    assert startup == {"tcpSocket": {"port": "metrics"}, "timeoutSeconds": 2,
                       "periodSeconds": 1, "failureThreshold": common.STARTUP_PROBE_FAILURES}
    assert common.STARTUP_PROBE_FAILURES * common.STARTUP_PROBE_PERIOD_SECONDS == 7 * 24 * 3600
    assert readiness["periodSeconds"] == 20  # the readiness probe's own pace is left alone


def test_a_startup_probe_before_a_liveness_probe_gives_up_when_that_one_would() -> None:
    startup = common.startup_probe({"exec": {"command": ["true"]}, "periodSeconds": 10},
                                   {"tcpSocket": {"port": 1}, "periodSeconds": 20,
                                    "failureThreshold": 6})
    assert (startup["periodSeconds"], startup["failureThreshold"]) == (1, 120)
    # The kubelet's defaults (10 s, 3 failures) where the liveness probe names none.
    assert common.startup_probe({"exec": {"command": ["true"]}},
                                {"exec": {"command": ["true"]}})["failureThreshold"] == 30
