"""Requests attributed to their author: the local control plane's audit log.

The API server's request counters say what was written or read, not by whom,
so a controller aggregating an Event looks like the operator writing. The local
control plane audits every write and read (not watches) by a ServiceAccount of
the operator's namespace (devcluster.cluster.audit_policy_document); this reads
those entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stackforge_operator.devcluster.cluster import READ_VERBS, WRITE_VERBS


@dataclass(frozen=True)
class Request:
    verb: str
    resource: str
    namespace: str
    name: str
    # "" for the core group.
    api_group: str = ""
    subresource: str = ""
    # What was written, where the audit policy logs it (the operator's own kinds).
    body: object = None

    def __str__(self) -> str:
        kind = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {kind} {self.namespace}/{self.name}"

    def described(self) -> str:
        """What :meth:`__str__` says, and the body written where the log holds it."""
        return f"{self} {json.dumps(self.body)}" if self.body is not None else str(self)


def mark(audit_log: Path) -> int:
    """Where the log ends now; pass it to :func:`writes_since`."""
    return audit_log.stat().st_size if audit_log.exists() else 0


def writes_since(audit_log: Path, offset: int, username: str) -> list[Request]:
    """Completed writes by ``username`` logged after ``offset``."""
    return requests_since(audit_log, offset, username, WRITE_VERBS)


def reads_since(audit_log: Path, offset: int, username: str) -> list[Request]:
    """Completed GETs and LISTs by ``username`` logged after ``offset``."""
    return requests_since(audit_log, offset, username, READ_VERBS)


def requests_since(audit_log: Path, offset: int, username: str,
                   verbs: tuple[str, ...]) -> list[Request]:
    with audit_log.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode().splitlines()
    found = []
    for line in lines:
        entry = json.loads(line)
        if (entry.get("stage") != "ResponseComplete" or entry["user"]["username"] != username
                or entry["verb"] not in verbs):
            continue
        ref = entry.get("objectRef") or {}
        found.append(Request(entry["verb"], ref.get("resource", ""), ref.get("namespace", ""),
                             ref.get("name", ""), ref.get("apiGroup", ""),
                             ref.get("subresource", ""), entry.get("requestObject")))
    return found
