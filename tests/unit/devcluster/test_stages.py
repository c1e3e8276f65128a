from __future__ import annotations

import yaml

from stackforge_operator.devcluster import stages

KWOK_LIKE = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-ready}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .status.phase, operator: In, values: [Pending]}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-complete}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .status.phase, operator: In, values: [Running]}
"""


def test_runner_pods_are_excluded_from_pod_complete_only() -> None:
    parsed = stages.parse_stages(KWOK_LIKE)
    adjusted = {s["metadata"]["name"]: s for s in stages.exclude_runner_pods(parsed)}

    complete = adjusted["pod-complete"]["spec"]["selector"]["matchExpressions"]
    assert {"key": '.metadata.labels.["stackforge.io/runner"]', "operator": "DoesNotExist"} in (
        complete
    )
    assert len(complete) == 2
    assert adjusted["pod-ready"]["spec"]["selector"]["matchExpressions"] == [
        {"key": ".status.phase", "operator": "In", "values": ["Pending"]}
    ]


def test_exclusion_does_not_modify_its_input() -> None:
    parsed = stages.parse_stages(KWOK_LIKE)
    before = yaml.safe_dump_all(parsed)
    stages.exclude_runner_pods(parsed)
    assert yaml.safe_dump_all(parsed) == before


def test_kwok_config_holds_only_the_stages() -> None:
    parsed = stages.parse_stages(KWOK_LIKE)
    documents = list(yaml.safe_load_all(stages.render_kwok_config(parsed)))
    assert [d["kind"] for d in documents] == ["Stage", "Stage"]
