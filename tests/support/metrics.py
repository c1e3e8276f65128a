"""Read the API server's own request counters (apiserver_request_total)."""

from __future__ import annotations

import re
from collections import Counter

from tests.support.clusters import ClusterHandle

_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


def request_totals(cluster: ClusterHandle) -> Counter[tuple[str, str, str]]:
    """Requests served so far, by (verb, resource, subresource)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    totals: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        totals[key] += int(float(match.group("value")))
    return totals


def writes_between(
    before: Counter[tuple[str, str, str]], after: Counter[tuple[str, str, str]],
    *, resources: frozenset[str] | None = None,
) -> Counter[tuple[str, str, str]]:
    """Write requests counted between two readings, optionally for some resources only."""
    delta = after - before
    return Counter({
        key: n for key, n in delta.items()
        if key[0] in WRITE_VERBS and (resources is None or key[1] in resources)
    })
