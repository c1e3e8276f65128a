from __future__ import annotations

from typing import Any

from stackforge_operator.reconcile.diff import (
    APPLIED_DIGEST_ANNOTATION,
    differences,
    needs_apply,
    stamped,
)

DESIRED: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "t", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1.27",
                     "resources": {"requests": {"cpu": "500m", "memory": "1024Mi"}}},
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }
        },
    },
}


def live_copy() -> dict[str, Any]:
    import copy

    live = copy.deepcopy(DESIRED)
    # What the API server and others add: defaults, status, foreign annotations.
    live["metadata"].update(
        uid="u-1", resourceVersion="42", generation=3, managedFields=[{"manager": "x"}],
        annotations={"argocd.argoproj.io/tracking-id": "app:apps/Deployment:t/web"},
    )
    container = live["spec"]["template"]["spec"]["containers"][0]
    container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    container["resources"]["requests"] = {"cpu": "0.5", "memory": "1Gi"}
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["status"] = {"readyReplicas": 2}
    return live


def test_converged_object_needs_no_write() -> None:
    assert differences(DESIRED, live_copy()) == []
    assert not needs_apply(DESIRED, live_copy())


def test_missing_object_needs_apply() -> None:
    assert needs_apply(DESIRED, None)


def test_hand_edited_owned_field_is_detected() -> None:
    live = live_copy()
    live["spec"]["replicas"] = 5
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:evil"
    assert differences(DESIRED, live) == [
        ".spec.replicas",
        ".spec.template.spec.containers[0].image",
    ]


def test_quantities_compare_by_value() -> None:
    live = live_copy()
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "2Gi"
    assert differences(DESIRED, live) == [
        ".spec.template.spec.containers[0].resources.requests.memory"
    ]


def test_removed_label_and_changed_list_length_are_detected() -> None:
    live = live_copy()
    del live["metadata"]["labels"]["app"]
    live["spec"]["template"]["spec"]["volumes"].append({"name": "extra", "emptyDir": {}})
    assert differences(DESIRED, live) == [
        ".metadata.labels.app",
        ".spec.template.spec.volumes",
    ]


def test_empty_desired_values_match_absent_live_values() -> None:
    desired: dict[str, Any] = {"spec": {"selector": {}, "ports": []}}
    assert differences(desired, {"spec": {}}) == []


def _applied(desired: dict[str, Any]) -> dict[str, Any]:
    """What the API server holds after ``desired`` was applied, plus its own fields."""
    import copy

    live = copy.deepcopy(desired)
    live["metadata"].update(uid="u-1", resourceVersion="42")
    live["metadata"].setdefault("annotations", {})["argocd.argoproj.io/tracking-id"] = "x"
    return live


def test_a_field_left_out_of_the_desired_object_is_a_difference_once_stamped() -> None:
    """An autoscaled app's replicas: 0 while suspended, left out on resume for the
    HPA: the bare comparison saw nothing to apply, and the apps stayed at 0."""
    suspended = {**DESIRED, "spec": {**DESIRED["spec"], "replicas": 0}}
    resumed = {**DESIRED, "spec": {k: v for k, v in DESIRED["spec"].items() if k != "replicas"}}
    live = _applied(stamped(suspended))
    assert not needs_apply(resumed, live)  # why the stamp is needed
    assert needs_apply(stamped(resumed), live)
    assert differences(stamped(resumed), live) == [
        f".metadata.annotations.{APPLIED_DIGEST_ANNOTATION}"]


def test_a_stamped_converged_object_needs_no_write_and_the_stamp_is_stable() -> None:
    once = stamped(DESIRED)
    assert stamped(once) == once  # stamping a stamped object changes nothing
    assert not needs_apply(stamped(DESIRED), _applied(once))
    # Key order does not change the digest; a value does.
    reordered = dict(reversed(list(DESIRED.items())))
    assert stamped(reordered)["metadata"] == once["metadata"]
    other = {**DESIRED, "metadata": {**DESIRED["metadata"], "labels": {"app": "api"}}}
    digest = once["metadata"]["annotations"][APPLIED_DIGEST_ANNOTATION]
    assert stamped(other)["metadata"]["annotations"][APPLIED_DIGEST_ANNOTATION] != digest
    # The desired object itself is left as it was.
    assert "annotations" not in DESIRED["metadata"]
